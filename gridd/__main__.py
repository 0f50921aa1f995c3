"""`python -m gridd` runs the CLI."""

from gridd.cli.main import main

raise SystemExit(main())

"""`python -m gridd` runs the CLI."""

from gridd.cli.main import main

# Guarded: a worker's process pool re-imports the main module in each child, which must not run the CLI.
if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m gridd` runs the CLI."""

from gridd.cli.program import run

# Guarded: a worker's process pool re-imports the main module in each child, which must not run the CLI.
if __name__ == "__main__":
    raise SystemExit(run())

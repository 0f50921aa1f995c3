"""The client commands stay cheap to start: importing the CLI loads neither Textual, nor structlog, nor
SQLite; and `python -m gridd --help` works."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ["textual", "structlog", "sqlite3"]


def test_importing_the_cli_and_its_client_commands_loads_no_tui_logging_or_database_code() -> None:
    code = f"import sys, gridd.cli.main, gridd.cli.commands; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"loaded at import: {done.stdout.strip()}"


def test_gridd_help_lists_the_commands_and_exits_0() -> None:
    done = subprocess.run([sys.executable, "-m", "gridd", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in ["broker", "worker", "submit", "show", "jobs", "cancel", "tui"]:
        assert command in done.stdout

"""The dashboard is only a client: it never imports the broker or the worker, and nothing outside
gridd/tui (and the `tui` command) imports textual."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gridd

ROOT = Path(gridd.__file__).parent


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_tui_imports_only_the_client_protocol_config_and_printable_of_gridd() -> None:
    allowed = ("gridd.client", "gridd.protocol", "gridd.config", "gridd.printable", "gridd.tui")
    for path in (ROOT / "tui").rglob("*.py"):
        for name in imported(path):
            if name.startswith("gridd"):
                assert name.startswith(allowed), f"{path.relative_to(ROOT)} imports {name}"


def test_nothing_outside_the_tui_imports_textual() -> None:
    for path in ROOT.rglob("*.py"):
        if path.relative_to(ROOT).parts[0] == "tui" or path.name == "tui_command.py":
            continue
        assert not any(n.split(".")[0] == "textual" for n in imported(path)), path


def test_the_cli_starts_without_loading_textual() -> None:
    code = "import sys, gridd.cli.main; sys.exit('textual' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0

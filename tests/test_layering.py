"""The package split of STYLE 2.1, checked on the source: each package imports only what the table allows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "gridd"
SHARED = {"gridd.config", "gridd.logs", "gridd.clock", "gridd.resources", "gridd.printable"}
# package -> the gridd packages it may import (itself always; the bare `gridd` holds only __version__)
ALLOWED = {
    "protocol": set(),
    "shared": {"gridd", "gridd.protocol.errors"},
    "client": {"gridd", "gridd.protocol", *SHARED},
    "broker": {"gridd", "gridd.protocol", *SHARED},
    "worker": {"gridd", "gridd.protocol", "gridd.client", *SHARED},
    "tui": {"gridd", "gridd.client", "gridd.protocol", "gridd.config", "gridd.printable"},
    "web": {"gridd", "gridd.client", "gridd.protocol", "gridd.config", "gridd.printable"},
}
ONLY_IN = {"textual": "gridd/tui/", "sqlite3": ("gridd/broker/store", "gridd/broker/schema.py")}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):  # lazy imports inside functions too
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (absolute imports only)"
            found.add(node.module or "")
    return found


def package_of(path: Path) -> tuple[str, str]:
    rel = path.relative_to(ROOT.parent).as_posix()
    top = rel.split("/")[1].removesuffix(".py")
    return ("shared" if f"gridd.{top}" in SHARED else top), rel


SOURCES = sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT.parent).as_posix())
def test_each_module_imports_only_what_its_package_may(path: Path) -> None:
    package, rel = package_of(path)
    for name in imports(path):
        root = name.split(".")[0]
        if root in ONLY_IN:
            assert rel.startswith(ONLY_IN[root]), f"{rel} imports {name}; only {ONLY_IN[root]} may"
        if package not in ALLOWED or root != "gridd" or name.startswith(f"gridd.{package}"):
            continue  # cli and __main__ may import everything
        ok = ALLOWED[package]
        assert any(name == a or (a != "gridd" and name.startswith(a + ".")) for a in ok), (
            f"{rel} ({package}) may not import {name}"
        )


def test_broker_and_worker_never_import_each_other() -> None:
    for path in SOURCES:
        package, rel = package_of(path)
        other = {"broker": "gridd.worker", "worker": "gridd.broker"}.get(package)
        assert not other or not any(n.startswith(other) for n in imports(path)), rel

"""The broker's use cases are parts that core.py assembles, and data flows one way between them: each part
imports only the parts below it in core's list, never core and never one above it (a change to the ledger
cannot reach back into a desk). Checked on the source, like tests/test_layering.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BROKER = Path(__file__).resolve().parents[2] / "gridd" / "broker"
# From the top down: core assembles them all; each may import those after it.
PARTS = ["core", "client_desk", "worker_desk", "token_desk", "housekeeping", "ledger", "settings"]


def broker_imports(name: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse((BROKER / f"{name}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gridd.broker."):
            found.add(node.module.removeprefix("gridd.broker."))
        elif isinstance(node, ast.ImportFrom) and node.module == "gridd.broker":
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("part", PARTS)
def test_each_part_imports_no_part_above_it(part: str) -> None:
    above = set(PARTS[: PARTS.index(part) + 1])
    assert not broker_imports(part) & above, f"gridd/broker/{part}.py imports {broker_imports(part) & above}"

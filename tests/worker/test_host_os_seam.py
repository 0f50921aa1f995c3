"""The worker asks the operating system for processes, signals, users and locks only through
gridd.worker.host_os, so that another host (Windows) can be added there without touching the rest."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WORKER = Path(__file__).resolve().parents[2] / "gridd" / "worker"
HOST_OS = WORKER / "host_os"
POSIX_MODULES = {"signal", "fcntl", "pwd", "grp", "resource", "select", "termios"}
POSIX_CALLS = {  # os functions that exist only on POSIX hosts, or act on process groups and users
    "killpg", "kill", "wait4", "waitid", "pidfd_open", "geteuid", "getuid", "getegid", "chown", "setsid",
    "getgrouplist", "setuid", "setgid", "setgroups",
}  # fmt: skip
POSIX_KEYWORDS = {"start_new_session", "preexec_fn", "user", "group", "extra_groups"}  # of subprocess calls

OUTSIDE = sorted(p for p in WORKER.rglob("*.py") if HOST_OS not in p.parents)


def offences(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in POSIX_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in POSIX_MODULES or node.module.startswith("gridd.worker.host_os."):
                found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "os" and node.attr in POSIX_CALLS:
                found.append(f"os.{node.attr}")
        elif isinstance(node, ast.Call) and _is_subprocess_call(node.func):
            found += [f"subprocess.{node.func.attr}({k.arg}=...)" for k in node.keywords if k.arg in POSIX_KEYWORDS]
    return found


def _is_subprocess_call(func: ast.expr) -> bool:
    return isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "subprocess"


@pytest.mark.parametrize("path", OUTSIDE, ids=lambda p: p.relative_to(WORKER.parent.parent).as_posix())
def test_the_worker_outside_host_os_makes_no_posix_only_call(path: Path) -> None:
    assert offences(path) == [], f"{path.name}: ask gridd.worker.host_os (its package, not its modules)"


def test_the_check_sees_a_posix_only_call() -> None:
    assert offences(HOST_OS / "posix_processes.py")  # signal, os.killpg, start_new_session: what it looks for

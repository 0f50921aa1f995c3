"""The package split of STYLE 2.1, checked on the source: each package imports only what the table allows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "gridd"
SHARED = {"gridd.config", "gridd.logs", "gridd.clock", "gridd.resources", "gridd.printable", "gridd.cron"}
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
ONLY_IN = {
    "textual": "gridd/tui/",
    "sqlite3": ("gridd/broker/store", "gridd/broker/schema/"),
    "psycopg": ("gridd/broker/store/pg_", "gridd/broker/schema/"),
    "psycopg_pool": ("gridd/broker/store/pg_",),
}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):  # lazy imports inside functions too
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (absolute imports only)"
            found.add(node.module or "")
            if node.module == "gridd":  # `from gridd import cron` imports the module gridd.cron
                found.update(f"gridd.{a.name}" for a in node.names if a.name != "__version__")
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


# ---- the redesign's rules (issue 18): checked on the source, so they hold for every later change ----------

MAX_MODULE_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SOURCES}


def _top_level_imports(path: Path) -> set[str]:
    """The gridd modules `path` depends on: its module-level imports, those under `if TYPE_CHECKING:` too
    (a type-only import that closes a circle is a circle of design all the same)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                visit(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body + node.orelse + node.finalbody)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                # `from pkg import module` depends on that module (pkg is its parent, set up first anyway);
                # `from module import name` on the module.
                submodules = {f"{node.module}.{a.name}" for a in node.names} & MODULES.keys()
                found.update(submodules or {node.module})

    visit(ast.parse(path.read_text(), str(path)).body)
    return {name for name in found if name in MODULES}


def _cycle() -> list[str] | None:
    graph = {name: sorted(_top_level_imports(path) - {name}) for name, path in MODULES.items()}
    state: dict[str, int] = {}  # 1 on the path being walked, 2 done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := walk(start)):
            return found
    return None


def test_no_import_cycle_between_modules() -> None:
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT.parent).as_posix())
def test_no_module_is_over_400_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name} has {lines} lines: split it by what it holds"


def _function_level_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, the comment on or just above it) of each gridd import made inside a function."""
    source = path.read_text()
    lines = source.splitlines()
    out = []
    for fn in ast.walk(ast.parse(source, str(path))):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                comment = " ".join(lines[node.lineno - 2 : node.lineno])
                out += [(node.lineno, name, comment) for name in names]
    return out


def test_function_level_imports_are_only_for_start_up_speed_and_say_so() -> None:
    """A lazy import breaks no cycle here (there is none); it only keeps a command from loading what it does
    not use. Only the CLI may do that, in a module whose comments say so (start-up time); the store's
    opening, for the PostgreSQL backend, whose driver is an optional dependency, saying so on the line above;
    and the broker's TLS set-up, which loads the certificate maker (`cryptography`) only when a certificate
    must be made or renewed, saying so (start-up memory and time)."""
    bad = []
    for path in SOURCES:
        rel = path.relative_to(ROOT.parent).as_posix()
        says_why = "start-up" in path.read_text()
        for line, name, comment in _function_level_imports(path):
            explained = rel.startswith("gridd/cli/") and (says_why or "start-up" in comment)
            explained |= rel == "gridd/broker/store/opening.py" and "optional dependency" in comment
            explained |= rel == "gridd/broker/tls.py" and name == "gridd.broker.certificates" and "start-up" in comment
            if not explained and name.split(".")[0] in {"gridd", "textual"}:
                bad.append(f"{rel}:{line} imports {name} inside a function")
    assert not bad, "\n".join(bad)


STATE_NAMES = {"waiting", "queued", "running", "succeeded", "failed", "cancelled", "held"}


def _state_literals(path: Path) -> list[str]:
    """String constants that are a job-state name, or SQL comparing `state` with one. A word that only looks
    like one (a JSON field counting running jobs, a verb's past tense) says so on its line: `not a job state`."""
    out = []
    source = path.read_text()
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if "not a job state" in lines[node.lineno - 1]:
                continue
            text = node.value
            if text in STATE_NAMES or any(f"'{s}'" in text for s in STATE_NAMES):
                out.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {text[:60]!r}")
    return out


def test_job_states_are_written_only_in_their_enum() -> None:
    found = [hit for path in SOURCES if path.name != "states.py" for hit in _state_literals(path)]
    assert not found, "job-state names outside gridd/protocol/states.py:\n" + "\n".join(found)


REQUEST_PATH = (
    "gridd/protocol/messages.py",
    "gridd/protocol/records.py",
    "gridd/protocol/handshake.py",
    "gridd/protocol/frames.py",
    "gridd/client/connection.py",
    "gridd/client/calls.py",
    "gridd/broker/session.py",
    "gridd/broker/routing.py",
    "gridd/broker/client_requests.py",
    "gridd/broker/worker_requests.py",
)


def test_the_request_path_is_typed_without_any() -> None:
    """Messages, the client's requests and the broker's handlers name their types: `Any` hides a reply of the
    wrong kind until a user meets it."""
    found = []
    for path in SOURCES:
        rel = path.relative_to(ROOT.parent).as_posix()
        if rel.startswith(REQUEST_PATH) or rel.endswith("_messages.py"):
            for node in ast.walk(ast.parse(path.read_text(), rel)):
                if (
                    isinstance(node, ast.Name)
                    and node.id == "Any"
                    or isinstance(node, ast.alias)
                    and node.name == "Any"
                ):
                    found.append(f"{rel}:{getattr(node, 'lineno', '?')}")
    assert not found, "Any in the request path: " + ", ".join(found)

"""gridd/client imports one way (issue 18): each module imports only modules of the layers below its own,
so there is no cycle to break with an import inside a function or under TYPE_CHECKING. A new module gets
a layer here on purpose."""

from __future__ import annotations

import ast
from pathlib import Path

CLIENT = Path(__file__).resolve().parent.parent / "gridd" / "client"
# Lowest first. A module may import the modules of earlier rows only.
LAYERS: list[set[str]] = [
    {"addresses", "backoff", "locate", "trust", "taskdef", "submits", "start_time"},  # import no other client module
    {"connection", "oneshot"},  # the framed connection: handshake, requests and their replies (oneshot: blocking)
    {"blobs", "bundles", "schedule_calls"},  # transfers over a connection; the schedule requests
    {"calls"},  # BrokerCalls: owns the connection, one method per broker request
    {"handles"},  # a job as an object, asking the client it was given
    {"mapping"},  # fan-out over the client it was given
    {"api"},  # Client = BrokerCalls + tasks, handles, fan-out; connect
    {"__init__"},  # gridd.client: Client and connect
    {"blocking"},  # SyncClient: Client driven through a blocking portal
    {"current"},  # the current client: innermost connect_sync of this thread, else the default
    {"sync", "tasks"},  # connect_sync; @gridd.task and Task.submit/map
]
LAYER = {module: depth for depth, row in enumerate(LAYERS) for module in row}


def client_imports(path: Path) -> set[str]:
    """The gridd.client modules `path` imports, anywhere in it (inside functions and `if` blocks too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gridd.client"):
            if node.module == "gridd.client":  # from gridd.client import blobs, api, ...
                found.update(a.name for a in node.names if (CLIENT / f"{a.name}.py").exists())
            else:
                found.add(node.module.removeprefix("gridd.client."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("gridd.client.") for a in node.names if a.name.startswith("gridd.client."))
    return found


def test_every_client_module_has_a_layer() -> None:
    assert {p.stem for p in CLIENT.glob("*.py")} == set(LAYER)


def test_each_client_module_imports_only_from_the_layers_below_it() -> None:
    upward = [
        f"{path.stem} imports {name}"
        for path in sorted(CLIENT.glob("*.py"))
        for name in sorted(client_imports(path))
        if LAYER[name] >= LAYER[path.stem]
    ]
    assert upward == []

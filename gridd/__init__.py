"""gridd: a batch grid for the machines an organisation already owns.

Importing this package is cheap on purpose: the CLI runs in loops and scripts, so nothing heavy
(structlog, Textual, SQLite) is imported until a command needs it.
"""

from typing import Any

__version__ = "0.1.0"

# The Python API, imported on first use so that `import gridd` (and the CLI) stays cheap.
_LAZY = {
    "connect": "gridd.client.api",
    "Client": "gridd.client.api",
    "connect_sync": "gridd.client.sync",
    "SyncClient": "gridd.client.sync",
    "task": "gridd.client.tasks",
    "Task": "gridd.client.tasks",
    "JobSpec": "gridd.protocol.messages",
    "JobFailed": "gridd.protocol.errors",
    "TaskFailed": "gridd.protocol.errors",
    "BadArguments": "gridd.protocol.errors",
    "GriddError": "gridd.protocol.errors",
    "KeyConflict": "gridd.protocol.errors",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gridd' has no attribute {name!r}")

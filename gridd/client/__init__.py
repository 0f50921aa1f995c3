"""The Python client of a gridd broker: `async with connect(address, token) as client`.

`Client` and `connect` are imported on first use, so that a module of this package (the CLI's one-shot
connection, the credential lookup) does not bring the whole async client, anyio and an event loop with it.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridd.client.api import Client, connect

__all__ = ["Client", "connect"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("gridd.client.api"), name)
    raise AttributeError(f"module 'gridd.client' has no attribute {name!r}")

"""The Python client of a gridd broker: `async with connect(address, token) as client`."""

from gridd.client.api import Client, connect

__all__ = ["Client", "connect"]

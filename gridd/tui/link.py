"""The dashboard's link to the broker: how to reach it, and the client while one is connected.

Rule: only the event feed sets `client`; everything else reads it through `require()`, which fails
with a clear message while the dashboard is reconnecting.
"""

from __future__ import annotations

from collections.abc import Callable

from gridd.client import Client
from gridd.protocol.errors import ConnectionLost


class BrokerLink:
    """Where the broker is (asked again at each reconnect) and the connected client, if any."""

    def __init__(self, address: str | Callable[[], str], token: str | None, insecure: bool | None = None) -> None:
        self._address = address
        self.token = token
        self.insecure = insecure  # None: as GRIDD_INSECURE or the config file says
        self.client: Client | None = None
        self.address = self.resolve()

    def resolve(self) -> str:
        """The address to connect to now (a callable may read the broker's address file each time)."""
        self.address = self._address() if callable(self._address) else self._address
        return self.address

    def require(self) -> Client:
        """The connected client; ConnectionLost while there is none."""
        if self.client is None:
            raise ConnectionLost(f"not connected to the broker at {self.address}; reconnecting")
        return self.client

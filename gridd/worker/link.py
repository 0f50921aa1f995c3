"""BrokerLink: the worker's connection to the broker of the moment, for the calls a job makes on it.

Rule: the session (gridd.worker.session) is the one writer (`up` when registered, `down` when the
connection is gone); a job's own calls (a task's large arguments and result, a bundle's files) go
through `call`, which waits for a connection while the broker is away and tries again on the next one
if the connection is lost meanwhile. It is the task runner's Payloads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from gridd.client import blobs
from gridd.client.connection import Connection
from gridd.protocol.errors import ConnectionLost

T = TypeVar("T")


class BrokerLink:
    """The current connection (None while the broker is away), and calls that survive its loss."""

    def __init__(self) -> None:
        self._current: Connection | None = None
        self._changed = anyio.Event()  # set (and replaced) whenever `current` changes: every caller waiting

    @property
    def current(self) -> Connection | None:
        return self._current

    def up(self, conn: Connection) -> None:
        self._set(conn)

    def down(self) -> None:
        self._set(None)

    def _set(self, conn: Connection | None) -> None:
        self._current = conn
        self._changed.set()
        self._changed = anyio.Event()

    async def call(self, call: Callable[[Connection], Awaitable[T]]) -> T:
        """`call` on the broker connection, again on the next one if the connection is lost meanwhile."""
        while True:
            while (conn := self._current) is None:
                await self._changed.wait()
            try:
                return await call(conn)
            except ConnectionLost:
                while self._current is conn:
                    await self._changed.wait()

    async def fetch(self, blob: str) -> bytes:
        """A task's large arguments, from the broker (after a reconnection if it is away)."""
        return await self.call(lambda conn: blobs.download(conn, blob))

    async def store(self, data: bytes) -> str:
        """Put a task's large result in the broker; returns its blob id."""
        return await self.call(lambda conn: blobs.upload(conn, data, "result"))

"""The store on SQLite: the use cases (usecases.py) run by the group commit of database.py and commit.py on
one file in WAL mode, the embedded default: a broker and its data dir, no server to run."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from gridd.broker.observe import Observer
from gridd.broker.schema import migrate
from gridd.broker.store.database import Database
from gridd.broker.store.interface import Announced, Store
from gridd.broker.store.usecases import UseCases
from gridd.protocol.errors import StorageFailed


class SQLiteStore(Database, UseCases):
    """Jobs, leases, attempts, outputs, tokens, blobs and bundles in one SQLite file (WAL)."""

    async def follow_peers(
        self, deliver: Callable[[Announced], Awaitable[None]], resync: Callable[[], Awaitable[None]]
    ) -> None:
        """No other broker shares this file (the data dir's lock): nothing to follow."""


if TYPE_CHECKING:

    def _implements(store: SQLiteStore) -> Store:
        return store  # mypy checks here that the store has every use case of the interface, as typed


@asynccontextmanager
async def open_store(path: Path, observer: Observer | None = None) -> AsyncIterator[SQLiteStore]:
    """Open (creating and migrating if needed) the database at `path`, in WAL mode, fsync on commit."""
    conn = await anyio.to_thread.run_sync(_connect, path)
    reader: sqlite3.Connection | None = None
    try:
        reader = await anyio.to_thread.run_sync(_connect_reader, path)
        yield SQLiteStore(conn, reader=reader, observer=observer)
    finally:
        with anyio.CancelScope(shield=True):
            if reader is not None:
                reader.close()
            await anyio.to_thread.run_sync(conn.close)


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: every transaction is an explicit BEGIN IMMEDIATE ... COMMIT (GroupCommit).
        # Used from one thread at a time (the store's limiter), not always the same one.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit survives a power cut, not only a killed broker; batching pays for it.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA busy_timeout = 5000")
        migrate(conn)
    except (OSError, sqlite3.Error) as exc:
        raise StorageFailed(f"cannot open the database {path}: {exc}") from exc
    return conn


def _connect_reader(path: Path) -> sqlite3.Connection:
    """A second connection, read-only, for the small reads made on the event loop (database.py: read_now)."""
    try:
        uri = path.resolve().as_uri() + "?mode=ro"  # as_uri escapes what a URI may not hold ("?", "#", "%")
        reader = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        reader.execute("PRAGMA query_only = 1")
        reader.execute("PRAGMA busy_timeout = 1000")
    except sqlite3.Error as exc:
        raise StorageFailed(f"cannot open the database {path} for reading: {exc}") from exc
    return reader

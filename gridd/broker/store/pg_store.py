"""The store on PostgreSQL: the same use cases as SQLite's (usecases.py), run by pg_commit's group commit, for
any number of brokers on one database (and PostgreSQL's own replication and failover under them).

Installed with `pip install 'gridd[postgresql]'` (psycopg 3: benchmarks/pg_drivers.py says why that driver).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import anyio
import psycopg

from gridd.broker.observe import Observer
from gridd.broker.schema.postgresql import migrate
from gridd.broker.store.changes import Changes, encode
from gridd.broker.store.interface import Announced, Store
from gridd.broker.store.pg_commit import PgGroupCommit, connect
from gridd.broker.store.pg_listen import follow
from gridd.broker.store.pg_tx import PgTx
from gridd.broker.store.sql import Tx
from gridd.broker.store.usecase import Backend, ReadNow
from gridd.broker.store.usecases import UseCases
from gridd.protocol.errors import StorageFailed

P = ParamSpec("P")
T = TypeVar("T")


class PostgresStore(UseCases, Backend):
    """Jobs, leases, attempts, outputs, tokens, blobs, bundles and schedules in one PostgreSQL database."""

    def __init__(self, commits: PgGroupCommit, observer: Observer | None = None) -> None:
        self._commits = commits
        self._observer = observer or Observer()

    async def _call(
        self,
        fn: Callable[Concatenate[Tx, P], T],
        durable: bool,
        read_now: ReadNow,
        changes: Changes | None,
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        # Every call, reads too, goes through the group commit: a read of a few rows costs a round trip to the
        # database either way, and joins the batch of its turn.
        def body(tx: Tx) -> T:
            result = fn(tx, *args, **kwargs)
            if changes is not None:
                announce(tx, changes(result, args, kwargs))
            return result

        return await self._commits.run(body, durable=durable)

    async def follow_peers(
        self, deliver: Callable[[Announced], Awaitable[None]], resync: Callable[[], Awaitable[None]]
    ) -> None:
        await follow(self._commits.url, self._commits.own_pids, deliver, resync)


def announce(tx: Tx, announced: Announced) -> None:
    """Tell the other brokers what this transaction changed: delivered if, and when, it commits (the NOTIFYs
    go with the batch's COMMIT, pg_commit.py)."""
    if announced.changed or announced.revoked:
        assert isinstance(tx, PgTx)  # noqa: S101 - this store's transactions are
        payloads = list(encode(announced))
        if not all(map(_BASE64.fullmatch, payloads)):  # they go into SQL text as literals
            raise ValueError("a change's payload is not base64")
        tx.notices += payloads


_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


if TYPE_CHECKING:

    def _implements(store: PostgresStore) -> Store:
        return store  # mypy checks here that the store has every use case of the interface, as typed


@asynccontextmanager
async def open_pg_store(url: str, observer: Observer | None = None) -> AsyncIterator[PostgresStore]:
    """Connect to the database at `url` (a libpq URL), creating or migrating its schema if needed."""
    conn = await anyio.to_thread.run_sync(_connect_and_migrate, url)
    commits = PgGroupCommit(url, observer, conn)
    try:
        yield PostgresStore(commits, observer)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(commits.close)


def _connect_and_migrate(url: str) -> psycopg.Connection[Any]:
    try:
        conn = connect(url)
    except psycopg.Error as exc:
        raise StorageFailed(f"cannot connect to the database {redact(url)}: {_first_line(exc)}") from exc
    try:
        migrate(conn)
    except psycopg.Error as exc:
        conn.close()
        raise StorageFailed(f"cannot set up the schema in {redact(url)}: {_first_line(exc)}") from exc
    return conn


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an unreadable database URL)"
    info.pop("password", None)
    return psycopg.conninfo.make_conninfo("", **info)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

"""How the SQLite store runs its use cases (usecase.py): in the group commit (commit.py), or, for a small
read, right here on the event loop.

Rules: a use case runs in the next group commit, alone under its savepoint, and returns only after COMMIT;
`durable` ones wait for fsync. A small read may instead run right here on the event loop's thread, from the
read-only connection (`read_now`): a trip to the database thread and a transaction cost ten times as much as
a read of a few rows by key. In WAL mode it never waits for the writer, and it sees every commit made before
it.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Callable, Sized
from typing import Concatenate, ParamSpec, TypeVar, cast

from gridd.broker.observe import Observer
from gridd.broker.store.changes import Changes
from gridd.broker.store.commit import GroupCommit
from gridd.broker.store.sql import SQLiteTx, Tx
from gridd.broker.store.usecase import Backend, ReadNow
from gridd.protocol.errors import StorageFailed

P = ParamSpec("P")
T = TypeVar("T")

# Reads of at most this many rows by key are made on the event loop (read_now="few"): the waits' and the
# result long-polls' second reads, after they were told which jobs finished.
SMALL_READ_ROWS = 64


class Database(Backend):
    """The store's connections: one that writes, through the group commit, and one that only reads."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        reader: sqlite3.Connection | None = None,
        observer: Observer | None = None,
        *,
        fsync: Callable[[int], None] = os.fsync,  # the tests watch it; it always syncs
    ) -> None:
        self._conn = conn
        self._tx = SQLiteTx(conn)
        self._reader = None if reader is None else SQLiteTx(reader)  # for small reads on the loop (read_now)
        self._observer = observer or Observer()
        self._commits = GroupCommit(conn, self._observer, fsync=fsync)

    async def _call(
        self,
        fn: Callable[Concatenate[Tx, P], T],
        durable: bool,
        read_now: ReadNow,
        changes: Changes | None,  # one broker on its own file: nobody to tell
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        # A read on the loop must not see what is committed but not yet fsynced (a reader told of a job that a
        # power cut then loses): while a durable batch awaits its fsync, "few" reads go through the group
        # commit, answered in commit order, so after that fsync. A token (read_now="always") is only known
        # after its creation was acknowledged, so it is durable by then.
        few = read_now == "few" and self._reader is not None and not self._commits.unsynced and _few(args)
        if read_now == "always" or few:
            return self._read_now(fn, *args, **kwargs)
        return await self._commits.run(functools.partial(fn, self._tx, *args, **kwargs), durable=durable)

    def _read_now(self, fn: Callable[Concatenate[Tx, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a small read on this thread, from the read-only connection."""
        if self._reader is None:
            raise StorageFailed("the store was opened without its read connection")
        try:
            return fn(self._reader, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StorageFailed(f"the broker could not read the database: {exc}") from exc


def _few(args: tuple[object, ...]) -> bool:
    return bool(args) and len(cast(Sized, args[0])) <= SMALL_READ_ROWS

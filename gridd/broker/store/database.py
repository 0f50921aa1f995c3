"""How the SQLite store runs its use cases: each is written once, as a function of the connection that
runs in one transaction (submit.py, leasing.py, ...), and `use_case` makes it the async method the broker
calls, saying how it commits.

Rules: a use case runs in the next group commit (store/commit.py, GroupCommit), alone under its savepoint,
and returns only after COMMIT; `durable` ones wait for fsync. A small read may instead run right here on
the event loop's thread, from the read-only connection (`read_now`): a trip to the database thread and a
transaction cost ten times as much as a read of a few rows by key. In WAL mode it never waits for the
writer, and it sees every commit made before it.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Callable, Coroutine, Sized
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, cast, overload

from gridd.broker.observe import Observer
from gridd.broker.store.commit import GroupCommit
from gridd.protocol.errors import StorageFailed

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")

# Reads of at most this many rows by key are made on the event loop (read_now="few"): the waits' and the
# result long-polls' second reads, after they were told which jobs finished.
SMALL_READ_ROWS = 64

ReadNow = Literal["never", "few", "always"]
UseCase = Callable[Concatenate["Database", P], Coroutine[Any, Any, T]]


class Database:
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
        self._reader = reader  # read-only, used on the event loop's thread for small reads (read_now)
        self._observer = observer or Observer()
        self._commits = GroupCommit(conn, self._observer, fsync=fsync)

    def _read_now(self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a small read on this thread, from the read-only connection."""
        if self._reader is None:
            raise StorageFailed("the store was opened without its read connection")
        try:
            return fn(self._reader, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StorageFailed(f"the broker could not read the database: {exc}") from exc


@overload
def use_case(
    fn: Callable[Concatenate[sqlite3.Connection, P], T], *, durable: bool, read_now: ReadNow = "never"
) -> UseCase[P, T]: ...


@overload
def use_case(
    fn: Callable[Concatenate[sqlite3.Connection, P], R],
    *,
    durable: bool,
    read_now: ReadNow = "never",
    then: Callable[[Observer, R], T],
) -> UseCase[P, T]: ...


def use_case(
    fn: Callable[Concatenate[sqlite3.Connection, P], Any],
    *,
    durable: bool,
    read_now: ReadNow = "never",
    then: Callable[[Observer, Any], Any] | None = None,
) -> UseCase[P, Any]:
    """The async method that runs `fn(connection, ...)` as one transaction: fsynced if `durable`; on the
    event loop from the read connection if `read_now` is "always", or "few" and its first argument holds
    at most SMALL_READ_ROWS keys. `then(observer, result)`, if given, runs after the commit (to report what
    committed) and makes the method's result."""

    async def run(store: Database, /, *args: P.args, **kwargs: P.kwargs) -> Any:
        # A read on the loop must not see what is committed but not yet fsynced (a reader told of a job that a
        # power cut then loses): while a durable batch awaits its fsync, "few" reads go through the group
        # commit, answered in commit order, so after that fsync. A token (read_now="always") is only known
        # after its creation was acknowledged, so it is durable by then.
        few = read_now == "few" and store._reader is not None and not store._commits.unsynced and _few(args)
        if read_now == "always" or few:
            result = store._read_now(fn, *args, **kwargs)
        else:
            result = await store._commits.run(functools.partial(fn, store._conn, *args, **kwargs), durable=durable)
        return result if then is None else then(store._observer, result)

    return functools.wraps(fn)(run)


def _few(args: tuple[object, ...]) -> bool:
    return bool(args) and len(cast(Sized, args[0])) <= SMALL_READ_ROWS

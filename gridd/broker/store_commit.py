"""Group commit: the store's calls, batched into one transaction and one hop to the database thread.

Rules: one batch at a time on the connection (a capacity limiter of 1), each a whole transaction run
in a worker thread. Calls made while a batch commits queue up for the next one. Each call runs under a
savepoint, so one that fails is undone alone; if SQLite rolls the whole transaction back (a full disk),
every call of the batch fails. Only a batch holding a durable call waits for fsync.

A batch of one call (no other call came within one turn of the event loop) runs on the loop's own thread
instead: the hop to a thread and back costs as much as the transaction itself on this machine
(benchmarks/README.md), and with nothing else queued the loop has nothing to do meanwhile. It does so only
while transactions are quick, so a disk that turns slow moves the commits back to the thread, where they do
not hold up the loop.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from gridd.broker.observe import Observer
from gridd.protocol.errors import StorageFailed

T = TypeVar("T")

MAX_BATCH_CALLS = 256

# A lone call runs on the loop only if the last batch took less than this (its SQL and its fsync).
INLINE_UNDER_S = 0.002


@dataclass(eq=False, slots=True)
class _Call:
    """One use case waiting for its group commit."""

    fn: Callable[[], Any]
    durable: bool
    done: anyio.Event = field(default_factory=anyio.Event)
    result: Any = None
    error: BaseException | None = None


class GroupCommit:
    """Runs store calls in batches on one SQLite connection (autocommit mode, explicit transactions)."""

    def __init__(self, conn: sqlite3.Connection, observer: Observer | None = None) -> None:
        self._conn = conn
        self._observer = observer or Observer()
        self._limiter = anyio.CapacityLimiter(1)
        self._queued: list[_Call] = []
        self._leading = False
        self._sync = "FULL"
        self._last_batch_s = 0.0

    async def run(self, fn: Callable[[], T], *, durable: bool) -> T:
        """Run one use case in the next group commit.

        Calls made while a batch is being committed queue up, and the next batch runs them all in one
        transaction and one hop to the database thread (DESIGN.md: one round trip serves many jobs). Each call
        has a savepoint, so one that fails is undone alone. A call returns only after COMMIT. It is not
        cancellable midway, on purpose: a transaction always ends before its caller hears of it."""
        call = _Call(fn, durable)
        self._queued.append(call)
        if not self._leading:
            with anyio.CancelScope(shield=True):
                await self._lead()
        await call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[no-any-return]

    async def _lead(self) -> None:
        """Commit batches until nothing is queued; whoever finds no batch running leads."""
        self._leading = True
        try:
            # One turn of the loop first: calls from messages read in the same turn join this batch.
            await anyio.lowlevel.checkpoint()
            while self._queued:
                batch, self._queued = self._queued[:MAX_BATCH_CALLS], self._queued[MAX_BATCH_CALLS:]
                try:
                    if len(batch) == 1 and self._last_batch_s < INLINE_UNDER_S:
                        self._commit_batch(batch)
                    else:
                        await anyio.to_thread.run_sync(self._commit_batch, batch, limiter=self._limiter)
                except BaseException as exc:  # a bug of ours: every caller of the batch hears of it
                    for call in batch:
                        call.error = call.error or exc
                    raise
                finally:
                    for call in batch:
                        call.done.set()
        finally:
            self._leading = False

    def _commit_batch(self, batch: list[_Call]) -> None:
        # Only a batch that acknowledges something to a person (a submit, a result) waits for fsync; a
        # lease grant or renewal lost with the power is re-done after restart (the job runs again).
        durable = any(call.durable for call in batch)
        started = time.perf_counter()
        try:
            self._run_batch(batch, durable)
        finally:
            self._last_batch_s = time.perf_counter() - started
        self._observer.committed(len(batch), self._last_batch_s, durable)

    def _run_batch(self, batch: list[_Call], durable: bool) -> None:
        conn = self._conn
        sync = "FULL" if durable else "NORMAL"
        try:
            if sync != self._sync:
                conn.execute(f"PRAGMA synchronous = {sync}")
                self._sync = sync
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:  # a closed or broken connection
            for call in batch:
                call.error = StorageFailed(f"the broker could not start a transaction: {exc}")
            return
        for call in batch:
            conn.execute("SAVEPOINT call")
            try:
                call.result = call.fn()
                conn.execute("RELEASE call")
            except Exception as exc:
                call.error = (
                    StorageFailed(f"the broker could not commit: {exc}") if isinstance(exc, sqlite3.Error) else exc
                )
                if not conn.in_transaction:  # SQLite rolled the whole transaction back (disk full)
                    return self._fail(batch, call.error)
                conn.execute("ROLLBACK TO call")
                conn.execute("RELEASE call")
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._fail(batch, StorageFailed(f"the broker could not commit: {exc}"))

    def _fail(self, batch: list[_Call], error: BaseException) -> None:
        for call in batch:
            call.result, call.error = None, error
        with contextlib.suppress(sqlite3.Error):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

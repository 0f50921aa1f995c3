"""Group commit: the store's calls, batched into one transaction, made durable by one fsync, off the loop
whenever it could stall anyone.

Rules: one batch at a time on the connection, each a whole transaction. Calls made while a batch commits
queue up for the next one. Each call of several runs under a savepoint, so one that fails is undone alone
(a lone call needs none: its transaction is rolled back); if SQLite rolls the whole transaction back (a full
disk), every call of the batch fails. A batch of one call (no other call came within one turn of the event
loop) runs its SQL on the loop's own thread while transactions are quick: the hop to a thread and back costs
as much as the transaction itself (benchmarks/README.md). Larger batches run on the database thread, a
thread of the store's own (call_thread.py), as the fsyncs run on another.

The connection commits with `synchronous=NORMAL` (no sync at COMMIT) and a batch holding a durable call (a
submit, a result: something a person is told) returns only once an fsync of the -wal file has covered it.
That fsync runs in a thread of its own, and fsyncs pipeline with the SQL: while one runs, the next batches
commit, and the next fsync covers them all. One case runs it on the loop instead: a lone call (nothing else
queued or committing, so nothing to pipeline) on a disk whose last FAST_FSYNCS_BEFORE_INLINE fsyncs each
took under SLOW_FSYNC_S. There the two thread wake-ups of a hop cost four times the fsync itself
(`python -m benchmarks thread-hop`: 82 µs on the loop, 348 µs through a hop). A disk that turns slow stalls
the loop for that one fsync; every fsync then runs in the thread for SLOW_FOR_S at least (`store.fsync_slow`
in the log as such a spell starts; each slow fsync extends it), so a slow disk stalls the loop at most once
in that long, never at each commit
(`python -m benchmarks slow-fsync`). Acknowledgements keep commit
order: a batch returns only when every durable batch committed before it has been synced. An fsync that
fails fails every call it covered (StorageFailed) and the store then refuses durable work until it is
restarted: after a failed fsync the kernel may have dropped the unwritten pages, so a later fsync that
succeeds proves nothing.

Why this is as durable as `synchronous=FULL` (https://www.sqlite.org/pragma.html#pragma_synchronous,
https://www.sqlite.org/wal.html). In WAL mode, NORMAL syncs the WAL before each checkpoint, the database
after it, and the WAL header when the file is reused; "with synchronous=FULL in WAL mode, an additional sync
operation of the WAL file happens after each transaction commit". That one sync is what we run ourselves,
after COMMIT and before anyone is told: fsync(2) of the -wal file through our own descriptor (on Linux it
writes back the file, whichever descriptor wrote it), so the disk gets the same writes and syncs in the same
order as with FULL. Two details FULL takes care of are kept: the directory is synced once, for a -wal file
that SQLite created and never synced; and FULL pads a commit to a sector only on file systems without
power-safe overwrite, which SQLite assumes on Unix by default (psow), so it pads nothing there either.
Consistency never depended on FULL ("WAL mode is always consistent with synchronous=NORMAL").
One difference remains: between COMMIT and its fsync another connection (the store's read connection) may
read a batch's rows before they are durable; with FULL it may not. `unsynced` says when that window is open.

Checkpoints: automatic ones are off (`wal_autocheckpoint=0`), since they would run, with their syncs, inside
whichever commit crossed the threshold, maybe on the loop. Once the -wal file passes CHECKPOINT_BYTES, the
next batch runs on the database thread and starts with a PASSIVE checkpoint: its syncs are off the loop, and
the commit right after it, with nothing written in between, starts the -wal file over (and syncs its new
header) there too. A checkpoint on a connection and thread of its own would not stall the commits, but under
a steady stream of them the file would never start over: a commit always lands between the end of the
copy and the next transaction. The batch behind a checkpoint waits for it, as it did for SQLite's own.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import structlog

from gridd.broker.observe import Observer
from gridd.broker.store.call_thread import CallThread
from gridd.broker.store.handoff import hand_on
from gridd.protocol.errors import StorageFailed

T = TypeVar("T")

log = structlog.get_logger()

MAX_BATCH_CALLS = 256

# A lone call runs its SQL on the loop only if the last batch's SQL took less than this (no fsync in it).
INLINE_UNDER_S = 0.002

# An fsync slower than this makes every fsync run in the thread for SLOW_FOR_S; after FAST_FSYNCS_BEFORE_INLINE
# quick ones in a row (the first ones too: a new disk is not trusted), a lone call's runs on the loop.
SLOW_FSYNC_S = 0.002
SLOW_FOR_S = 60.0
FAST_FSYNCS_BEFORE_INLINE = 16

# A checkpoint starts when the -wal file passes this size (SQLite's own default: 1,000 pages of 4 KiB), and
# a -wal file that was started over is cut back to it (journal_size_limit).
CHECKPOINT_BYTES = 4 * 1024 * 1024


@dataclass(eq=False, slots=True)
class _Call:
    """One use case waiting for its group commit."""

    fn: Callable[[], Any]
    durable: bool
    woken: anyio.Event = field(default_factory=anyio.Event)  # committed, or its turn to lead (`leads`)
    leads: bool = False
    result: Any = None
    error: BaseException | None = None
    seq: int = 0  # the batch it committed in (batches are numbered from 1 as they commit)
    need: int = 0  # the durable batch that must be synced before this call returns (0: none)


@dataclass(eq=False, slots=True)
class _Round:
    """One fsync of the -wal file, covering every batch committed up to `upto`."""

    upto: int
    done: anyio.Event = field(default_factory=anyio.Event)


class GroupCommit:
    """Runs store calls in batches on one SQLite connection (WAL mode, autocommit, explicit transactions).

    `fsync` is the function that makes the -wal file durable, given its descriptor (os.fsync; a test passes
    its own to see when and where it runs)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        observer: Observer | None = None,
        *,
        fsync: Callable[[int], None] = os.fsync,
    ) -> None:
        self._conn = conn
        self._observer = observer or Observer()
        self._fsync = fsync
        self._db_path = _wal_database(conn)
        conn.execute("PRAGMA synchronous = NORMAL")  # the commit's WAL sync is ours (module docstring)
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # ours run on the database thread (_checkpoint_due)
        conn.execute(f"PRAGMA journal_size_limit = {CHECKPOINT_BYTES}")
        self._database_thread = CallThread("gridd-commit")  # one batch's SQL at a time
        self._sync_thread = CallThread("gridd-fsync")  # one fsync at a time
        self._queued: list[_Call] = []
        self._leading = False
        self._last_sql_s = 0.0
        # Batches are numbered as they commit. `_dirty`: the last durable one; `_synced`: the last one an
        # fsync covered. A call returns once `_synced` reaches its `need`.
        self._seq = 0
        self._dirty = 0
        self._synced = 0
        self._round: _Round | None = None
        self._unreported: list[tuple[int, int, float]] = []  # (seq, calls, started) of durable batches
        self._broken: StorageFailed | None = None
        self._broken_seq = 0  # batches up to this one were committed before an fsync failed
        self._fd_box = [-1]  # our descriptor of the -wal file (a list, for the finalizer)
        self._fd_lock = threading.Lock()  # opened by the loop (_checkpoint_due) or the sync thread
        self._dir_synced = False
        self._last_fsync_s = 0.0
        self._fast_fsyncs = 0  # quick fsyncs in a row since the last slow one
        self._threaded_until = 0.0  # perf_counter time: until then, every fsync runs in the thread
        self._checkpoint_at = CHECKPOINT_BYTES  # the -wal file size past which the next batch checkpoints
        weakref.finalize(self, _close_fd, self._fd_box)

    @property
    def unsynced(self) -> bool:
        """A durable batch is committed (readable by other connections) but not yet synced."""
        return self._synced < self._dirty

    async def run(self, fn: Callable[[], T], *, durable: bool) -> T:
        """Run one use case in the next group commit.

        Calls made while a batch is being committed queue up, and the next batch runs them all in one
        transaction (DESIGN.md: one round trip serves many jobs). Each call has a savepoint, so one that
        fails is undone alone. A call returns only after COMMIT and, if its batch or one before it was
        durable, after the fsync that covered it. It is not cancellable midway, on purpose: a transaction
        always ends before its caller hears of it."""
        if durable and self._broken is not None:
            raise self._broken
        call = _Call(fn, durable)
        self._queued.append(call)
        with anyio.CancelScope(shield=True):
            if not self._leading:
                self._leading = True
                await anyio.lowlevel.checkpoint()  # calls from messages read in the same turn join this batch
                await self._commit_next()
            else:
                await call.woken.wait()
                if call.leads:
                    await self._commit_next(handed=True)
            if call.error is None:
                await self._settle(call)
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[no-any-return]

    async def _commit_next(self, *, handed: bool = False) -> None:
        """Commit the next batch (the leader's own call is its first), then hand the lead to the first call
        still queued: each caller goes on as soon as its own batch has committed, in commit order. The
        leader does not wait for fsyncs: the callers do (_settle), so the next batch's SQL runs meanwhile."""
        taken, self._queued = self._queued[:MAX_BATCH_CALLS], self._queued[MAX_BATCH_CALLS:]
        try:
            batch = taken if self._broken is None else self._refuse_durable(taken, self._broken)
            if batch:
                await self._commit(batch, handed)
        finally:
            self._leading = hand_on(self._queued, taken)

    async def _commit(self, batch: list[_Call], handed: bool) -> None:
        checkpoint = self._checkpoint_due()
        started, committed = time.perf_counter(), False
        try:
            if len(batch) == 1 and self._last_sql_s < INLINE_UNDER_S and not checkpoint:
                if handed:  # woken ahead of the last batch's callers (hand_on): they go on first, so
                    await anyio.lowlevel.checkpoint()  # that changes reach the ledger in commit order
                committed = self._run_batch(batch)
            else:
                committed = await self._database_thread.run(functools.partial(self._run_batch, batch, checkpoint))
        except BaseException as exc:  # a bug of ours: every caller of the batch hears of it
            for call in batch:
                call.error = call.error or exc
            raise
        finally:
            self._committed(batch, committed=committed, started=started)

    async def _settle(self, call: _Call) -> None:
        """Return once an fsync has covered every durable batch up to this call's; run one if none is."""
        while self._synced < call.need:
            if self._broken is not None:
                if call.seq <= self._broken_seq:  # committed on top of what the failed fsync covered
                    call.result, call.error = None, self._broken
                return  # a later call: durable ones were refused, the others promised nothing durable
            if self._round is None:
                await self._sync_round()
            else:
                await self._round.done.wait()

    async def _sync_round(self) -> None:
        """One fsync of the -wal file, covering every batch committed so far: in the sync thread, or on the
        loop for a lone call on a quick disk (module docstring)."""
        this = self._round = _Round(self._dirty)
        started = time.perf_counter()
        try:
            if self._inline_fsync(started):
                self._sync_wal()
            else:
                await self._sync_thread.run(self._sync_wal)
        except Exception as exc:  # noqa: BLE001 - whatever failed, nothing it covered may be acknowledged
            self._broken = StorageFailed(
                f"the broker could not make its commits durable (fsync: {exc}); restart it once the disk is fixed"
            )
            self._broken_seq = self._seq
            self._unreported.clear()
            log.error("store.fsync_failed", error=str(exc), batches=this.upto - self._synced)
        else:
            self._synced = max(self._synced, this.upto)
            now = time.perf_counter()
            while self._unreported and self._unreported[0][0] <= this.upto:
                _, calls, began = self._unreported.pop(0)
                self._observer.committed(calls, now - began, True)
            self._observer.synced(now - started)
            self._timed_fsync(self._last_fsync_s, now)
        finally:
            self._round = None
            this.done.set()

    def _inline_fsync(self, now: float) -> bool:
        """May this fsync run on the loop? Only with nothing to pipeline it with, on a disk that is quick."""
        quick = self._fast_fsyncs >= FAST_FSYNCS_BEFORE_INLINE and now >= self._threaded_until
        return quick and not self._queued and not self._leading

    def _timed_fsync(self, seconds: float, now: float) -> None:
        """Count a quick fsync, or start (or extend) a slow spell, in which every fsync runs in the thread."""
        if seconds < SLOW_FSYNC_S:
            self._fast_fsyncs += 1
            return
        if now >= self._threaded_until:  # as a spell starts: a disk slow now and then extends it, unsaid
            log.info("store.fsync_slow", seconds=round(seconds, 4), threaded_for_s=SLOW_FOR_S)  # handled: no fault
        self._fast_fsyncs = 0
        self._threaded_until = now + SLOW_FOR_S

    def _sync_wal(self) -> None:
        """fsync the -wal file (and, the first time, its directory); times the file's fsync alone (a hop to
        the thread and back is no measure of the disk)."""
        fd = self._open_wal()
        if not self._dir_synced:
            dir_fd = os.open(Path(self._db_path).parent, os.O_RDONLY | os.O_CLOEXEC)
            try:
                self._fsync(dir_fd)
            finally:
                os.close(dir_fd)
            self._dir_synced = True
        started = time.perf_counter()
        self._fsync(fd)
        self._last_fsync_s = time.perf_counter() - started

    def _refuse_durable(self, batch: list[_Call], error: StorageFailed) -> list[_Call]:
        for call in batch:
            if call.durable:
                call.error = error
        return [call for call in batch if not call.durable]

    def _committed(self, batch: list[_Call], *, committed: bool, started: float) -> None:
        """On the loop, after a batch's transaction: number it and say what its calls wait for."""
        self._last_sql_s = time.perf_counter() - started
        self._seq += 1
        # Only a batch that acknowledges something to a person (a submit, a result) waits for fsync; a
        # lease grant or renewal lost with the power is re-done after restart (the job runs again). It
        # still returns after every durable batch before it has been synced: acknowledgements keep order.
        durable = any(call.durable for call in batch)
        if durable and committed:
            self._dirty = self._seq
            self._unreported.append((self._seq, len(batch), started))
        else:
            self._observer.committed(len(batch), self._last_sql_s, durable)
        for call in batch:
            call.seq, call.need = self._seq, self._dirty

    def _run_batch(self, batch: list[_Call], checkpoint: bool = False) -> bool:
        """The batch's transaction (after a checkpoint if asked); False if nothing of it was committed."""
        conn = self._conn
        if checkpoint:
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:  # the commit that follows will say whether the disk is at fault
                log.warning("store.checkpoint_failed", error=str(exc))
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:  # a closed or broken connection
            for call in batch:
                call.error = StorageFailed(f"the broker could not start a transaction: {exc}")
            return False
        lone = len(batch) == 1  # undone by its transaction's ROLLBACK: no savepoint of its own
        for call in batch:
            if not lone:
                conn.execute("SAVEPOINT call")
            try:
                call.result = call.fn()
                if not lone:
                    conn.execute("RELEASE call")
            except Exception as exc:
                call.error = (
                    StorageFailed(f"the broker could not commit: {exc}") if isinstance(exc, sqlite3.Error) else exc
                )
                if lone or not conn.in_transaction:  # or SQLite rolled the whole transaction back (disk full)
                    self._fail(batch, call.error)
                    return False
                conn.execute("ROLLBACK TO call")
                conn.execute("RELEASE call")
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._fail(batch, StorageFailed(f"the broker could not commit: {exc}"))
            return False
        return True

    def _fail(self, batch: list[_Call], error: BaseException) -> None:
        for call in batch:
            call.result, call.error = None, error
        with contextlib.suppress(sqlite3.Error):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

    # ---- the -wal file and checkpoints -------------------------------------------------------------------

    def _open_wal(self) -> int:
        """Our descriptor of the -wal file, opened once (SQLite creates the file; we only sync and size it)."""
        with self._fd_lock:
            if self._fd_box[0] < 0:
                self._fd_box[0] = os.open(self._db_path + "-wal", os.O_RDONLY | os.O_CLOEXEC)
            return self._fd_box[0]

    def _checkpoint_due(self) -> bool:
        """Whether the next batch should checkpoint first: the -wal file passed its threshold."""
        try:
            size = os.fstat(self._open_wal()).st_size
        except OSError:
            return False  # no -wal file yet: nothing to copy
        if size <= CHECKPOINT_BYTES:
            self._checkpoint_at = CHECKPOINT_BYTES  # started over and cut back: count from the threshold again
        if size <= self._checkpoint_at:
            return False
        # A reader may hold frames, so that the file cannot start over: then try again a quarter further on.
        self._checkpoint_at = size + CHECKPOINT_BYTES // 4
        return True


def _wal_database(conn: sqlite3.Connection) -> str:
    """The file of a connection's main database, which must be in WAL mode (the store's, see store.py)."""
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    path = next((row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "")
    if str(mode).lower() != "wal" or not path:
        raise ValueError(f"group commit needs a database file in WAL mode, not {path or ':memory:'} ({mode})")
    return str(path)


def _close_fd(box: list[int]) -> None:
    if box[0] >= 0:
        with contextlib.suppress(OSError):
            os.close(box[0])

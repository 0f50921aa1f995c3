"""Group commit on a real SQLite file: a durable call returns only after an fsync that ran off the event
loop's thread, acknowledgements keep commit order, one fsync covers every batch committed while the previous
one ran, a failed fsync fails what it covered and refuses durable work after, and checkpoints keep the
-wal file small. The fsync function is ours to watch (it still syncs); nothing else is replaced."""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from gridd.broker.store.commit import CHECKPOINT_BYTES, FAST_FSYNCS_BEFORE_INLINE, SLOW_FSYNC_S, GroupCommit
from gridd.broker.store.sqlite import SQLiteStore, _connect, _connect_reader
from gridd.protocol.errors import StorageFailed
from gridd.protocol.messages import JobSpec
from gridd.protocol.states import JobState
from tests.conftest import eventually


def wal_db(tmp_path: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """The writer (as the store opens it) and a reader of a fresh database with one table."""
    path = tmp_path / "gridd.db"
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    return conn, sqlite3.connect(path, isolation_level=None, check_same_thread=False)


class Disk:
    """fsync as the kernel does it, recording where it ran; `hold()` makes the next ones wait for `release()`."""

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.wal_syncs = 0
        self.entered = threading.Event()
        self._gate = threading.Event()
        self._gate.set()

    def hold(self) -> None:
        self._gate.clear()
        self.entered.clear()

    def release(self) -> None:
        self._gate.set()

    def __call__(self, fd: int) -> None:
        self.threads.append(threading.get_ident())
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            self.entered.set()
            assert self._gate.wait(10), "the test never released the disk"
            self.wal_syncs += 1
        os.fsync(fd)


def note(conn: sqlite3.Connection, body: str) -> int:
    return int(conn.execute("INSERT INTO notes (body) VALUES (?) RETURNING id", (body,)).fetchone()[0])


def bodies(reader: sqlite3.Connection) -> list[str]:
    return [row[0] for row in reader.execute("SELECT body FROM notes ORDER BY id")]


async def committed(reader: sqlite3.Connection, count: int) -> bool:
    return len(bodies(reader)) == count


async def test_a_durable_call_returns_only_after_its_fsync_which_runs_off_the_loop(tmp_path: Path) -> None:
    conn, reader = wal_db(tmp_path)
    disk = Disk()
    commits = GroupCommit(conn, fsync=disk)
    returned: list[int] = []

    async def submit() -> None:
        returned.append(await commits.run(lambda: note(conn, "a"), durable=True))

    disk.hold()
    async with anyio.create_task_group() as tg:
        tg.start_soon(submit)
        await eventually(lambda: anyio.to_thread.run_sync(disk.entered.wait, 0))
        assert bodies(reader) == ["a"]  # committed, and the loop still runs while its fsync is under way
        assert returned == []  # but its caller has not heard of it yet
        assert commits.unsynced
        disk.release()
    assert returned == [1]
    assert not commits.unsynced
    assert disk.wal_syncs == 1
    assert threading.get_ident() not in disk.threads  # no fsync ran on the event loop's thread


async def test_acknowledgements_keep_commit_order_and_one_fsync_covers_what_committed_meanwhile(
    tmp_path: Path,
) -> None:
    """While the first durable batch's fsync runs, later calls commit (their SQL does not wait) but none
    returns before it: a lease is never acknowledged ahead of the submit it follows. The next fsync covers
    every batch committed meanwhile."""
    conn, reader = wal_db(tmp_path)
    disk = Disk()
    commits = GroupCommit(conn, fsync=disk)
    returned: list[str] = []

    async def call(body: str, durable: bool) -> None:
        await commits.run(lambda: note(conn, body), durable=durable)
        returned.append(body)

    disk.hold()
    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "submit", True)
        await eventually(lambda: anyio.to_thread.run_sync(disk.entered.wait, 0))
        tg.start_soon(call, "lease", False)
        await eventually(lambda: committed(reader, 2))
        for i in range(3):
            tg.start_soon(call, f"result {i}", True)
        await eventually(lambda: committed(reader, 5))
        assert returned == []
        disk.release()
    assert returned[:2] == ["submit", "lease"]
    assert sorted(returned[2:]) == ["result 0", "result 1", "result 2"]
    assert bodies(reader)[:2] == ["submit", "lease"]
    assert disk.wal_syncs == 2  # the submit's, then one for the three results


class Refused(Exception):
    """A use case's own refusal, raised after it wrote."""


async def test_a_call_that_fails_after_writing_is_undone_alone_whether_alone_in_its_batch_or_not(
    tmp_path: Path,
) -> None:
    conn, reader = wal_db(tmp_path)
    commits = GroupCommit(conn)

    def write_then_refuse(body: str) -> None:
        note(conn, body)
        raise Refused(body)

    with pytest.raises(Refused):  # a batch of one: its transaction is rolled back
        await commits.run(lambda: write_then_refuse("lone"), durable=True)
    assert await commits.run(lambda: note(conn, "after"), durable=True) == 1
    refused: list[str] = []

    async def call(body: str, fails: bool) -> None:
        try:
            await commits.run(lambda: write_then_refuse(body) if fails else note(conn, body), durable=True)
        except Refused as exc:
            refused.append(str(exc))

    async with anyio.create_task_group() as tg:  # started in one turn: one batch
        for i, fails in enumerate([False, True, False]):
            tg.start_soon(call, f"batched {i}", fails)
    assert refused == ["batched 1"]
    assert bodies(reader) == ["after", "batched 0", "batched 2"]
    assert not conn.in_transaction


async def test_a_failed_fsync_fails_what_it_covered_and_durable_work_is_refused_after(tmp_path: Path) -> None:
    conn, reader = wal_db(tmp_path)
    broken = True

    def fsync(fd: int) -> None:
        if broken and not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        os.fsync(fd)

    commits = GroupCommit(conn, fsync=fsync)
    with pytest.raises(StorageFailed, match="fsync.*Input/output error"):
        await commits.run(lambda: note(conn, "covered"), durable=True)
    broken = False  # a disk that answers again proves nothing about the pages an earlier error dropped
    with pytest.raises(StorageFailed, match="restart"):
        await commits.run(lambda: note(conn, "refused"), durable=True)
    assert "refused" not in bodies(reader)  # refused before it ran
    # what promised nothing durable still runs
    assert await commits.run(lambda: note(conn, "lease"), durable=False) > 0


async def test_checkpoints_keep_the_wal_file_small(tmp_path: Path) -> None:
    """Automatic checkpoints are off (they would sync inside a commit on the loop); ours, in a thread, copy
    the -wal file into the database, and it starts over instead of growing."""
    conn, reader = wal_db(tmp_path)
    commits = GroupCommit(conn)
    wal = tmp_path / "gridd.db-wal"
    piece = "x" * (256 * 1024)
    for i in range(3 * CHECKPOINT_BYTES // len(piece)):
        await commits.run(lambda i=i: note(conn, f"{i}{piece}"), durable=True)  # type: ignore[misc]

    async def small_again() -> bool:
        await commits.run(lambda: note(conn, "small"), durable=True)
        return wal.stat().st_size <= CHECKPOINT_BYTES + len(piece)

    await eventually(small_again)
    assert reader.execute("SELECT COUNT(*) FROM notes WHERE body LIKE '%x'").fetchone()[0] == 48


async def test_a_small_read_on_the_loop_never_sees_a_job_whose_submit_is_not_yet_fsynced(tmp_path: Path) -> None:
    """`show` of a job a power cut could still lose would tell a person it exists: while a durable batch
    waits for its fsync, the store's reads by key wait their turn behind it."""
    disk = Disk()
    conn, reader = _connect(tmp_path / "gridd.db"), _connect_reader(tmp_path / "gridd.db")
    store = SQLiteStore(conn, reader=reader, fsync=disk)
    try:
        disk.hold()
        order: list[str] = []
        seen: list[str] = []

        async def read() -> None:
            seen.extend(view.state for view in await store.get_jobs(["1"]))
            order.append("read")

        async with anyio.create_task_group() as tg:
            tg.start_soon(store.submit_jobs, [JobSpec(argv=["true"])], 1_000)
            await anyio.to_thread.run_sync(disk.entered.wait, 10)  # committed; its fsync is under way
            tg.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            order.append("synced")
            disk.release()
        assert order == ["synced", "read"]
        assert seen == [JobState.QUEUED]
    finally:
        reader.close()
        conn.close()


class Sometimes(Disk):
    """A disk whose speed the test sets: quick (no real fsync, whose time a loaded machine's disk would
    decide: the tests are about where fsyncs run and what is said of them), or slow."""

    slow = False

    def __call__(self, fd: int) -> None:
        self.threads.append(threading.get_ident())
        if self.slow and not stat.S_ISDIR(os.fstat(fd).st_mode):
            time.sleep(SLOW_FSYNC_S * 3)  # the disk is slow (simulated), not a wait for something


async def test_a_lone_fsync_runs_on_the_loop_only_while_the_disk_is_quick_and_a_slow_one_sends_them_off(
    tmp_path: Path,
) -> None:
    """On a quick disk a thread hop costs more than the fsync, so a lone call's fsync runs on the loop; one
    slow fsync sends every later one to the thread (for a minute), so a slow disk stalls the loop once."""
    conn, _ = wal_db(tmp_path)
    disk = Sometimes()
    commits = GroupCommit(conn, fsync=disk)
    loop = threading.get_ident()

    async def lone_calls(n: int) -> list[bool]:
        on_loop = []
        for i in range(n):
            before = len(disk.threads)
            await commits.run(lambda i=i: note(conn, str(i)), durable=True)
            on_loop.append(disk.threads[before:][-1] == loop)
        return on_loop

    first = await lone_calls(FAST_FSYNCS_BEFORE_INLINE + 3)
    assert first[:FAST_FSYNCS_BEFORE_INLINE] == [False] * FAST_FSYNCS_BEFORE_INLINE  # a new disk is not trusted
    assert first[FAST_FSYNCS_BEFORE_INLINE:] == [True] * 3  # quick ones in a row: lone fsyncs on the loop
    disk.slow = True
    assert await lone_calls(1) == [True]  # the disk turned slow: this one stalled the loop, once
    disk.slow = False
    assert await lone_calls(FAST_FSYNCS_BEFORE_INLINE + 3) == [False] * (FAST_FSYNCS_BEFORE_INLINE + 3)


async def test_a_disk_slow_now_and_then_is_logged_once_a_spell_not_at_each_slow_fsync(tmp_path: Path) -> None:
    """A busy machine's disk takes over SLOW_FSYNC_S for one fsync in thirty or so: the log says so when the
    fsyncs go to the thread, and not again while they stay there."""
    conn, _ = wal_db(tmp_path)
    disk = Sometimes()
    commits = GroupCommit(conn, fsync=disk)
    with capture_logs() as logs:
        for i in range(12):
            disk.slow = i % 3 == 0  # slow, quick, quick, slow, ...: every slow one extends the spell
            await commits.run(lambda i=i: note(conn, str(i)), durable=True)
    assert [e["event"] for e in logs if e["event"] == "store.fsync_slow"] == ["store.fsync_slow"]

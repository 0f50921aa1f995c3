"""The group commit hands each caller its result as soon as that caller's own batch has committed, in
commit order, whoever leads the batches. A caller that happened to lead must not wait for the batches that
queued up behind it: under steady load its request (a worker's results, say) would wait for as long as the
load lasts, and a recount of the jobs would no longer see its changes in order (ledger.py)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from gridd.broker.store.commit import GroupCommit
from gridd.broker.store.pg_commit import PgGroupCommit
from gridd.broker.store.sql import Tx
from tests.conftest import STORE, eventually

GATE_S = 10  # a gate the test forgets to open fails the test after this long, never hangs it


class Gate:
    """A store call's SQL that waits, in the store's thread, until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._open = threading.Event()

    def open(self) -> None:
        self._open.set()

    def __call__(self) -> None:
        self.entered.set()
        assert self._open.wait(GATE_S), "the test never opened the gate"


def _committer(tmp_path: Path) -> tuple[Callable[[Callable[[], None], bool], Any], Callable[[], None]]:
    """`run(fn, durable)` of the backend under test's group commit, and how to close it."""
    url = STORE["url"]
    if url is None:
        conn = sqlite3.connect(tmp_path / "order.db", isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        sqlite_commits = GroupCommit(conn)
        return (lambda fn, durable: sqlite_commits.run(fn, durable=durable)), conn.close
    pg_commits = PgGroupCommit(url)

    def run(fn: Callable[[], None], durable: bool) -> Any:
        def body(tx: Tx) -> None:
            tx.execute("SELECT 1")
            fn()

        return pg_commits.run(body, durable=durable)

    return run, pg_commits.close


async def test_the_caller_that_led_a_batch_returns_when_its_batch_commits_not_when_the_queue_drains(
    tmp_path: Path,
) -> None:
    run, close = _committer(tmp_path)
    first, second = Gate(), Gate()
    returned: list[str] = []

    async def call(name: str, fn: Callable[[], None]) -> None:
        await run(fn, False)
        returned.append(name)

    try:
        with anyio.fail_after(3 * GATE_S):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "leader", first)  # leads the first batch, which waits at the gate
                tg.start_soon(call, "same batch", lambda: None)
                await anyio.to_thread.run_sync(first.entered.wait, GATE_S)
                tg.start_soon(call, "next batch", second)  # queued behind it
                tg.start_soon(call, "next batch too", lambda: None)
                first.open()
                await anyio.to_thread.run_sync(second.entered.wait, GATE_S)
                # The next batch is under way (at its gate): the first batch's callers have their answers.
                await eventually(lambda: sorted(returned) == ["leader", "same batch"], GATE_S / 2)
                second.open()
        assert returned[2:] == ["next batch", "next batch too"]  # each batch's callers, in commit order
    finally:
        first.open()
        second.open()
        close()

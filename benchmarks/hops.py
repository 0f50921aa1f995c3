"""The `thread-hop` scenario: what one hop from the event loop to a thread and back costs on this machine,
beside what a one-row durable SQLite transaction costs on the loop and through such a hop. It is the
figure behind the broker's choice to commit a lone call on the loop (gridd/broker/store/commit.py)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from benchmarks.harness import run_async, temp_root

HOPS = 5000
TRANSACTIONS = 2000


def thread_hop() -> dict[str, float]:
    with temp_root() as tmp:
        return run_async(_measure, tmp / "hop.db")  # type: ignore[no-any-return]


async def _measure(path: Path) -> dict[str, float]:
    limiter = anyio.CapacityLimiter(1)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")  # as the broker's acknowledged writes
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")

        def nothing() -> None:
            return None

        def transaction() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (body) VALUES (?)", ("x" * 100,))
            conn.execute("COMMIT")

        async def hop() -> None:
            await anyio.to_thread.run_sync(nothing, limiter=limiter)

        async def inline() -> None:
            transaction()

        async def through_thread() -> None:
            await anyio.to_thread.run_sync(transaction, limiter=limiter)

        out: dict[str, float] = {}
        out["hop_us"], out["hop_cpu_us"] = await _per_call(hop, HOPS)
        out["txn_loop_us"], out["txn_loop_cpu_us"] = await _per_call(inline, TRANSACTIONS)
        out["txn_thread_us"], out["txn_thread_cpu_us"] = await _per_call(through_thread, TRANSACTIONS)
        return out
    finally:
        conn.close()


async def _per_call(call: Callable[[], Awaitable[None]], n: int) -> tuple[float, float]:
    """Wall and CPU (this process, all threads) microseconds per call, over n calls one after another."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - t0) / n * 1e6, (time.process_time() - cpu0) / n * 1e6

"""Two stores on one PostgreSQL database, as two brokers have them: a lease granted through one is renewed and
completed through the other, a stale or foreign result is refused whichever receives it, and where both act
on the same jobs at once (two results for one lease, two reapers, two dispatchers, a cancel meeting a
completion) each attempt still ends once and no job goes to two workers.

"At once" is made certain, not left to timing: a third session holds a job's row (as a broker in the middle
of its transaction does), the stores' calls queue up behind it (pg_stat_activity shows them waiting), and
then it lets go.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from gridd.broker.store import Store, open_store
from gridd.protocol.errors import ErrorCode
from gridd.protocol.messages import LeasedJob, LeaseRef
from tests.broker.test_store import RETRY_MS, TTL_MS, lease, lease_one, result, spec, submit
from tests.clock import FakeClock
from tests.conftest import eventually, store_location

# Several brokers on one database is PostgreSQL's configuration (SQLite's file has one broker).
pytestmark = pytest.mark.backends("postgresql")


@asynccontextmanager
async def two_stores(tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    url = str(store_location(tmp_path))
    with anyio.fail_after(30):
        async with open_store(url) as a, open_store(url) as b:
            yield a, b


@contextmanager
def admin(tmp_path: Path) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(str(store_location(tmp_path)), autocommit=True) as conn:
        yield conn


@contextmanager
def row_held(tmp_path: Path, job_id: str) -> Iterator[psycopg.Connection[Any]]:
    """A session holding the job's row until its rollback(): whoever locks the row waits until then."""
    with psycopg.connect(str(store_location(tmp_path))) as conn:
        conn.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (int(job_id),))
        yield conn
        conn.rollback()


async def waiting(conn: psycopg.Connection[Any], n: int) -> None:
    """Until `n` transactions of the database wait for a row lock."""

    await eventually(lambda: waiters(conn), holds=lambda seen: seen >= n, what=f"{n} transactions waiting")


def waiters(conn: psycopg.Connection[Any]) -> int:
    """How many transactions of the database wait for a row lock now."""
    found = conn.execute(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    return int(found[0]) if found else 0


# ---- one lease, two brokers ---------------------------------------------------------------------------------------


async def test_a_lease_granted_through_one_broker_is_renewed_and_completed_through_the_other(tmp_path: Path) -> None:
    clock = FakeClock()
    async with two_stores(tmp_path) as (a, b):
        (job_id,) = await submit(a, clock, spec())
        job = await lease_one(a, clock)
        clock.advance(TTL_MS / 1000 - 1)
        assert await b.renew_leases("w1", [LeaseRef(job_id=job_id, lease=job.lease)], clock.now_ms() + TTL_MS) == []
        clock.advance(TTL_MS / 1000 - 1)  # past the lease's first deadline, within the one B renewed
        assert await a.expire_leases(clock.now_ms()) == []  # A's reaper sees B's renewal
        (ok,), changed = await b.complete_jobs("w1", [result(job, stdout=b"via b")], clock.now_ms(), RETRY_MS)
        assert (ok.code, ok.state) == (0, "succeeded")
        assert [(t.job_id, t.state) for t in changed] == [(job_id, "succeeded")]
        view, attempts = await a.get_job(job_id)
        assert (view.state, view.worker, view.exit_code) == ("succeeded", "w1", 0)
        assert await a.read_output(job_id, "stdout") == (b"via b", False)
        assert [(x.lease, x.exit_code) for x in attempts] == [(job.lease, 0)]


async def test_a_stale_or_foreign_result_is_refused_whichever_broker_receives_it(tmp_path: Path) -> None:
    clock = FakeClock()
    async with two_stores(tmp_path) as (a, b):
        (job_id,) = await submit(a, clock, spec(max_attempts=3))
        old = await lease_one(a, clock, "w1")
        clock.advance(TTL_MS / 1000 + 1)
        await b.expire_leases(clock.now_ms())  # B's reaper ends w1's lease; the job runs again on w2, through B
        new = await lease_one(b, clock, "w2")
        for store in (a, b):
            (late,), changed = await store.complete_jobs("w1", [result(old, 0)], clock.now_ms(), RETRY_MS)
            assert (late.code, changed) == (ErrorCode.STALE_LEASE, [])
            (foreign,), changed = await store.complete_jobs("w3", [result(new, 0)], clock.now_ms(), RETRY_MS)
            assert (foreign.code, changed) == (ErrorCode.FOREIGN_LEASE, [])
            stale = LeaseRef(job_id=job_id, lease=old.lease)
            assert await store.renew_leases("w1", [stale], clock.now_ms() + TTL_MS) == [stale]
        view, _ = await a.get_job(job_id)
        assert (view.state, view.worker, view.attempts) == ("running", "w2", 2)
        (ok,), _ = await a.complete_jobs("w2", [result(new, 0)], clock.now_ms(), RETRY_MS)
        assert ok.code == 0


# ---- races ------------------------------------------------------------------------------------------------------


async def test_two_brokers_given_the_same_result_at_once_record_one_outcome(tmp_path: Path) -> None:
    """A worker that sent its result to A, lost the connection and sent it again to B."""
    clock = FakeClock()
    async with two_stores(tmp_path) as (a, b):
        ids = await submit(a, clock, *(spec() for _ in range(3)))
        jobs = await lease(a, clock, n=3)
        with admin(tmp_path) as conn:
            for job in jobs:
                outcomes: dict[str, list[Any]] = {}

                async def complete(name: str, store: Store, job: LeasedJob, outcomes: dict[str, list[Any]]) -> None:
                    outcomes[name], _ = await store.complete_jobs("w1", [result(job)], clock.now_ms(), RETRY_MS)

                with row_held(tmp_path, job.job_id) as holder:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(complete, "a", a, job, outcomes)
                        tg.start_soon(complete, "b", b, job, outcomes)
                        await waiting(conn, 2)
                        holder.rollback()
                codes = sorted(o.code for got in outcomes.values() for o in got)
                assert codes == [0, ErrorCode.STALE_LEASE], outcomes
        for job_id in ids:
            view, attempts = await b.get_job(job_id)
            assert (view.state, len(attempts)) == ("succeeded", 1)


async def test_a_renewal_queued_behind_a_completion_through_the_other_broker_reports_the_lease_ended(
    tmp_path: Path,
) -> None:
    """A worker that moved brokers while its result was on the way: the heartbeat B answers after A recorded
    the result must not call the lease still held."""
    clock = FakeClock()
    async with two_stores(tmp_path) as (a, b):
        (job_id,) = await submit(a, clock, spec())
        job = await lease_one(a, clock)
        ref = LeaseRef(job_id=job_id, lease=job.lease)
        out: dict[str, Any] = {}

        async def complete() -> None:
            (out["completed"],), _ = await a.complete_jobs("w1", [result(job)], clock.now_ms(), RETRY_MS)

        async def renew() -> None:
            out["lost"] = await b.renew_leases("w1", [ref], clock.now_ms() + TTL_MS)

        with admin(tmp_path) as conn, row_held(tmp_path, job_id) as holder:
            async with anyio.create_task_group() as tg:
                tg.start_soon(complete)
                await waiting(conn, 1)  # the completion first in the row's queue
                tg.start_soon(renew)
                await waiting(conn, 2)
                holder.rollback()
        assert (out["completed"].code, out["lost"]) == (0, [ref])
        assert (await b.get_job(job_id))[0].state == "succeeded"


async def test_two_brokers_reapers_at_once_expire_each_lease_once(tmp_path: Path) -> None:
    clock = FakeClock()
    async with two_stores(tmp_path) as (a, b):
        (blocker,) = await submit(a, clock, spec())
        held = await lease_one(a, clock, "w0")
        ids = await submit(a, clock, *(spec(max_attempts=2) for _ in range(10)))
        assert len(await lease(a, clock, n=10)) == 10
        clock.advance(TTL_MS / 1000 + 1)
        out: dict[str, Any] = {}

        async def reap(name: str, store: Store) -> None:
            out[name] = await store.expire_leases(clock.now_ms())

        async def renew_blocker() -> None:  # keeps A's transaction open, after its reaper read and wrote
            out["renewed"] = await a.renew_leases("w0", [LeaseRef(job_id=blocker, lease=held.lease)], clock.now_ms())

        with admin(tmp_path) as conn, row_held(tmp_path, blocker) as holder:
            async with anyio.create_task_group() as tg:
                tg.start_soon(reap, "a", a)
                tg.start_soon(renew_blocker)  # the same turn: one transaction on A
                await waiting(conn, 1)
                tg.start_soon(reap, "b", b)  # done at once, or waiting for A's rows
                await eventually(lambda: "b" in out or waiters(conn) >= 2, what="B's reaper done or waiting")
                holder.rollback()
        reaped = [t.job_id for name in ("a", "b") for t in out[name]]
        assert sorted(reaped, key=int) == ids  # each once, by one reaper or the other
        for job_id in ids:
            view, attempts = await b.get_job(job_id)
            assert (view.state, [x.outcome for x in attempts]) == ("queued", ["lease_expired"])


async def test_a_broker_leasing_skips_the_jobs_another_is_leasing_instead_of_waiting_for_them(tmp_path: Path) -> None:
    clock = FakeClock()
    async with two_stores(tmp_path) as (a, b):
        (blocker,) = await submit(a, clock, spec(priority=9))
        held = await lease_one(a, clock, "w0")
        ids = await submit(a, clock, *(spec() for _ in range(10)))
        out: dict[str, Any] = {}

        async def lease_on(name: str, store: Store, n: int) -> None:
            out[name] = await lease(store, clock, f"w{name}", n=n)

        async def renew_blocker() -> None:  # keeps A's transaction open, its five jobs locked
            out["renewed"] = await a.renew_leases("w0", [LeaseRef(job_id=blocker, lease=held.lease)], clock.now_ms())

        with admin(tmp_path) as conn, row_held(tmp_path, blocker) as holder:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lease_on, "a", a, 5)
                tg.start_soon(renew_blocker)  # the same turn: one transaction on A
                await waiting(conn, 1)
                tg.start_soon(lease_on, "b", b, 10)
                try:  # B does not wait for A's transaction
                    await eventually(lambda: "b" in out, within_s=5, what="B's lease while A's transaction is open")
                finally:
                    holder.rollback()
        got_a, got_b = out["a"], out["b"]
        assert [j.job_id for j in got_a] == ids[:5]
        assert sorted([j.job_id for j in got_a + got_b], key=int) == ids


async def test_no_job_is_handed_to_two_workers_when_two_brokers_lease_at_once(tmp_path: Path) -> None:
    clock = FakeClock()
    async with two_stores(tmp_path) as (a, b):
        ids = await submit(a, clock, *(spec(priority=i % 3) for i in range(60)))
        got: dict[str, list[str]] = {}

        async def take(worker: str, store: Store) -> None:
            for _ in range(len(ids)):  # bounded: each round takes at least one job, or ends
                jobs = await lease(store, clock, worker=worker, n=3)
                if not jobs:
                    return
                got.setdefault(worker, []).extend(j.job_id for j in jobs)

        async with anyio.create_task_group() as tg:
            for w in range(8):
                tg.start_soon(take, f"w{w}", (a, b)[w % 2])
        handed = [job_id for jobs in got.values() for job_id in jobs]
        assert sorted(handed, key=int) == ids
        views = await b.get_jobs(ids)
    owner = {job_id: w for w, jobs in got.items() for job_id in jobs}
    assert all(v.state == "running" and v.worker == owner[v.id] for v in views)


async def test_a_cancel_through_one_broker_meeting_a_completion_through_the_other_applies_one_of_them(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with two_stores(tmp_path) as (a, b):
        (job_id,) = await submit(a, clock, spec())
        job = await lease_one(a, clock)
        out: dict[str, Any] = {}

        async def complete() -> None:
            (out["completed"],), _ = await a.complete_jobs("w1", [result(job)], clock.now_ms(), RETRY_MS)

        async def cancel() -> None:
            (out["cancelled"],), _, _, _ = await b.control_jobs("cancel", [job_id], clock.now_ms())

        with admin(tmp_path) as conn, row_held(tmp_path, job_id) as holder:
            async with anyio.create_task_group() as tg:
                tg.start_soon(complete)
                tg.start_soon(cancel)
                await waiting(conn, 2)
                holder.rollback()
        applied = {name for name, o in out.items() if o.code == 0}
        assert len(applied) == 1, out
        view, attempts = await b.get_job(job_id)
    if applied == {"completed"}:
        assert (view.state, len(attempts), out["cancelled"].code) == ("succeeded", 1, ErrorCode.ILLEGAL_TRANSITION)
    else:
        assert (view.state, len(attempts), out["completed"].code) == ("cancelled", 0, ErrorCode.STALE_LEASE)

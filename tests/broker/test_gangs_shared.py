"""Gang jobs with two brokers on one PostgreSQL database: two brokers leasing the same queued gang at once give
it to one set of workers (the second skips it, never waits for the first); the attempt ends once when two
members' results, or a member's result and another member's lapse, come through two brokers at once; and a
broker counts a gang leased or ended through another as one job.

"At once" is made certain as in test_store_shared.py: a third session holds the gang's row (as a broker in the
middle of its transaction does) until the calls wait for it or are seen not to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from gridd.broker.store import Store
from gridd.broker.store.gang_rows import GangGrant, GangSeat
from gridd.broker.transitions import Transition
from gridd.protocol.errors import ErrorCode
from gridd.protocol.messages import LeasedJob, LeaseRef
from gridd.protocol.states import JobState as S
from tests.broker.test_gangs import both, finish
from tests.broker.test_leases import LEASES, take_job, worker_conn
from tests.broker.test_store import RETRY_MS, TTL_MS, lease_one, result, spec, submit
from tests.broker.test_store_shared import admin, row_held, two_stores, waiters, waiting
from tests.clock import FakeClock
from tests.conftest import client_of, running_broker
from tests.polling import eventually


def grant(job_id: str, *workers: str) -> GangGrant:
    return GangGrant(job_id, [GangSeat(w, "", f"{w}-host") for w in workers])


def rank(job: LeasedJob) -> int:
    return int(job.spec.env["GRIDD_GANG_RANK"])


def ref(job: LeasedJob) -> LeaseRef:
    return LeaseRef(job_id=job.job_id, lease=job.lease)


async def leased_gang(store: Store, clock: FakeClock, *workers: str, **kw: Any) -> list[LeasedJob]:
    """A gang of len(workers) submitted and leased through `store`, its members in rank order."""
    (gang,) = await submit(store, clock, spec("mpirun", gang=len(workers), **kw))
    (members,) = await store.lease_gangs([grant(gang, *workers)], clock.now_ms(), TTL_MS)
    assert [rank(m) for m in members] == list(range(len(workers)))
    return members


async def test_two_brokers_leasing_the_same_gang_at_once_give_it_to_one_set_of_workers(tmp_path: Path) -> None:
    clock = FakeClock()
    async with two_stores(tmp_path) as (a, b):
        (blocker,) = await submit(a, clock, spec(priority=9))
        held = await lease_one(a, clock, "w0")
        (gang,) = await submit(a, clock, spec("mpirun", gang=2))
        assert [g.job_id for g in await b.queued_gangs(10)] == [gang]  # both brokers see it queued
        out: dict[str, Any] = {}

        async def lease_on(name: str, store: Store, *workers: str) -> None:
            out[name] = await store.lease_gangs([grant(gang, *workers)], clock.now_ms(), TTL_MS)

        async def renew_blocker() -> None:  # keeps A's transaction open, the gang's row locked by its lease
            out["renewed"] = await a.renew_leases("w0", [LeaseRef(job_id=blocker, lease=held.lease)], clock.now_ms())

        with admin(tmp_path) as conn, row_held(tmp_path, blocker) as holder:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lease_on, "a", a, "w1", "w2")
                tg.start_soon(renew_blocker)  # the same turn: one transaction on A
                await waiting(conn, 1)
                tg.start_soon(lease_on, "b", b, "w3", "w4")
                try:  # B skips the gang A is leasing: it neither waits for A's transaction nor leases it too
                    await eventually(lambda: "b" in out, within_s=5, what="B's lease while A's transaction is open")
                finally:
                    holder.rollback()
        (members,) = out["a"]
        assert out["b"] == [[]]
        assert [m.spec.env["GRIDD_GANG_WORKERS"] for m in members] == ["w1,w2"] * 2
        view, _ = await b.get_job(gang)
        assert (view.state, view.worker, view.attempts) == (S.RUNNING, "w1", 1)
        # B knows the gang's members as A leased them: w2 renews through B; w4 holds nothing of it.
        assert await b.renew_leases("w2", [ref(members[1])], clock.now_ms() + TTL_MS) == []
        assert await b.lease_gangs([grant(gang, "w3", "w4")], clock.now_ms(), TTL_MS) == [[]]


async def test_two_members_last_results_through_two_brokers_at_once_end_the_attempt_once(tmp_path: Path) -> None:
    clock = FakeClock()
    async with two_stores(tmp_path) as (a, b):
        first, second = await leased_gang(a, clock, "w1", "w2")
        out: dict[str, tuple[Any, list[Transition]]] = {}

        async def complete(name: str, store: Store, worker: str, member: LeasedJob) -> None:
            res = result(member, 0, stdout=f"rank {rank(member)}\n".encode())
            out[name] = await store.complete_jobs(worker, [res], clock.now_ms(), RETRY_MS)

        with admin(tmp_path) as conn, row_held(tmp_path, first.job_id) as holder:
            async with anyio.create_task_group() as tg:
                tg.start_soon(complete, "a", a, "w1", first)
                tg.start_soon(complete, "b", b, "w2", second)
                try:  # both wait for the row (each decides only once it holds it), or one is done already
                    await eventually(lambda: waiters(conn) + len(out) >= 2, what="both results waiting or done")
                finally:
                    holder.rollback()
        assert [o.code for name in ("a", "b") for o in out[name][0]] == [0, 0]
        changed = [(t.job_id, t.state) for name in ("a", "b") for t in out[name][1]]
        assert changed == [(first.job_id, S.SUCCEEDED)]  # by whichever came second
        view, attempts = await b.get_job(first.job_id)
        assert (view.state, len(attempts)) == (S.SUCCEEDED, 1)
        assert await a.read_output(first.job_id, "stdout") == (b"rank 0\nrank 1\n", False)


async def test_a_members_result_queued_behind_another_members_lapse_through_the_other_broker_is_refused(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with two_stores(tmp_path) as (a, b):
        (blocker,) = await submit(a, clock, spec(priority=9))
        held = await lease_one(a, clock, "w0")
        first, _ = await leased_gang(a, clock, "w1", "w2", max_attempts=2)
        clock.advance(TTL_MS / 1000 - 1)
        refs = [ref(first), LeaseRef(job_id=blocker, lease=held.lease)]
        assert await a.renew_leases("w1", refs[:1], clock.now_ms() + TTL_MS) == []  # rank 0 renews; rank 1 is silent
        await a.renew_leases("w0", refs[1:], clock.now_ms() + TTL_MS)
        clock.advance(2)  # past rank 1's deadline
        out: dict[str, Any] = {}

        async def reap() -> None:
            out["reaped"] = await b.expire_leases(clock.now_ms())

        async def renew_blocker() -> None:  # keeps B's transaction open, after its reaper decided on the gang
            out["renewed"] = await b.renew_leases("w0", refs[1:], clock.now_ms())

        async def complete() -> None:
            out["completed"] = await a.complete_jobs("w1", [result(first, 1)], clock.now_ms(), RETRY_MS)

        with admin(tmp_path) as conn, row_held(tmp_path, blocker) as holder:
            async with anyio.create_task_group() as tg:
                tg.start_soon(reap)
                tg.start_soon(renew_blocker)  # the same turn: one transaction on B
                await waiting(conn, 1)
                tg.start_soon(complete)  # rank 0 fails through A meanwhile
                try:
                    await waiting(conn, 2)
                finally:
                    holder.rollback()
        assert [(t.job_id, t.state, t.worker) for t in out["reaped"]] == [(first.job_id, S.QUEUED, "w2")]
        (refused,), changed = out["completed"]
        assert (refused.code, changed) == (ErrorCode.STALE_LEASE, [])
        view, attempts = await a.get_job(first.job_id)
        assert (view.state, view.worker, [x.outcome for x in attempts]) == (S.QUEUED, None, ["lease_expired"])


async def test_a_broker_reaping_skips_a_gang_whose_members_result_the_other_is_recording(tmp_path: Path) -> None:
    clock = FakeClock()
    async with two_stores(tmp_path) as (a, b):
        first, _ = await leased_gang(a, clock, "w1", "w2", max_attempts=2)
        clock.advance(TTL_MS / 1000 - 1)
        assert await a.renew_leases("w1", [ref(first)], clock.now_ms() + TTL_MS) == []
        clock.advance(2)  # past rank 1's deadline
        out: dict[str, Any] = {}

        async def complete() -> None:
            out["completed"] = await a.complete_jobs("w1", [result(first, 1)], clock.now_ms(), RETRY_MS)

        async def reap() -> None:
            out["reaped"] = await b.expire_leases(clock.now_ms())

        with admin(tmp_path) as conn, row_held(tmp_path, first.job_id) as holder:
            async with anyio.create_task_group() as tg:
                tg.start_soon(complete)
                await waiting(conn, 1)  # rank 0's failure through A, waiting for the gang's row
                tg.start_soon(reap)
                try:  # B's reaper does not wait for it, nor decide on the gang meanwhile
                    await eventually(lambda: "reaped" in out, within_s=5, what="B's reaper while the row is held")
                finally:
                    holder.rollback()
        assert out["reaped"] == []
        (ok,), changed = out["completed"]
        assert (ok.code, [(t.job_id, t.state, t.worker) for t in changed]) == (0, [(first.job_id, S.QUEUED, "w1")])
        assert await b.expire_leases(clock.now_ms()) == []  # the attempt ended: its lapsed member with it
        view, attempts = await b.get_job(first.job_id)
        assert (view.state, [(x.worker, x.exit_code) for x in attempts]) == (S.QUEUED, [("w1", 1)])


async def test_a_broker_counts_a_gang_leased_and_ended_through_the_other_as_one_job(tmp_path: Path) -> None:
    clock = FakeClock()
    async with (
        running_broker(tmp_path / "a", clock, **LEASES) as a,
        running_broker(tmp_path / "b", clock, **LEASES) as b,
        client_of(b) as on_b,
        worker_conn(a, "w1") as (w1, _),
        worker_conn(a, "w2") as (w2, _),
    ):

        async def counts() -> dict[str, int]:
            return {s: n for s, n in (await on_b.status()).counts.items() if n}

        (gang,) = await on_b.submit_many([spec("mpirun", gang=2, max_attempts=2)])
        with anyio.fail_after(10):
            m1, m2 = await both(take_job(w1), take_job(w2))  # A heard of it from B, and leased it
        assert m1.job_id == m2.job_id == gang
        await eventually(counts, holds=lambda c: c == {S.RUNNING: 1}, what="one running job on B")
        assert await finish(w2, m2, 3, b"") == 0  # a member fails: the gang is queued again, as one job
        await eventually(counts, holds=lambda c: c == {S.QUEUED: 1}, what="one queued job on B")
        clock.advance(1)  # its retry delay
        a.broker.dispatcher.wake()
        with anyio.fail_after(10):
            m1, m2 = await both(take_job(w1), take_job(w2))
        await eventually(counts, holds=lambda c: c == {S.RUNNING: 1}, what="one running job on B")
        assert await finish(w1, m1, 0, b"") == 0
        assert (await on_b.status()).counts[S.RUNNING] == 1  # one member done: the gang still runs
        assert await finish(w2, m2, 0, b"") == 0
        await eventually(counts, holds=lambda c: c == {S.SUCCEEDED: 1}, what="one succeeded job on B")

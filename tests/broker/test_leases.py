"""Leases against a real broker over TCP, with time driven by a FakeClock: an expired lease goes back to
the queue and the vanished worker's late result is refused; heartbeats keep a lease alive; a broker
restart gives running leases one TTL for their workers to re-attach before any is reaped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from structlog.testing import capture_logs

from gridd.broker.leases import LeaseReaper
from gridd.client import connect
from gridd.client.connection import Connection, open_connection
from gridd.protocol.messages import (
    CompleteJobs,
    JobResult,
    LeasedJob,
    LeaseRef,
    RegisterWorker,
    RenewLeases,
    RequestJobs,
)
from tests.clock import FakeClock
from tests.conftest import TOKEN, BrokerHandle, running_broker
from tests.polling import eventually

TTL_S = 30.0
TTL_MS = int(TTL_S * 1000)
NET_S = 10  # bound on every network await


# Time is the test's FakeClock, and the broker's own reaper only runs when a test says so.
LEASES: dict[str, Any] = {"lease_ttl_s": TTL_S, "reap_every_s": 3600.0}


@asynccontextmanager
async def worker_conn(
    b: BrokerHandle, name: str = "w1", running: Sequence[LeaseRef] = ()
) -> AsyncIterator[tuple[Connection, list[LeaseRef]]]:
    """A worker speaking the protocol by hand, so a test decides when it heart-beats or vanishes."""
    with anyio.fail_after(NET_S):
        async with open_connection(b.addr, TOKEN, role="worker", name=name) as conn:
            reply = await conn.request(
                lambda rid: RegisterWorker(
                    rid=rid, host="test-host", slots=4, queues=["default"], running=list(running)
                )
            )
            yield conn, list(reply.lost)


async def take_job(conn: Connection) -> LeasedJob:
    with anyio.fail_after(NET_S):
        (job,) = (await conn.request(lambda rid: RequestJobs(rid=rid, max_jobs=1))).jobs
    return job


async def complete(conn: Connection, job: LeasedJob, exit_code: int = 0) -> int:
    res = JobResult(job_id=job.job_id, lease=job.lease, exit_code=exit_code, outcome="exited", started_ms=1, ended_ms=2)
    with anyio.fail_after(NET_S):
        (outcome,) = (await conn.request(lambda rid: CompleteJobs(rid=rid, results=[res]))).outcomes
    return int(outcome.code)


def ref(job: LeasedJob) -> LeaseRef:
    return LeaseRef(job_id=job.job_id, lease=job.lease)


async def state_of(b: BrokerHandle, job_id: str) -> tuple[str, str | None, int, str | None]:
    view, _ = await b.broker.store.get_job(job_id)
    return view.state, view.worker, view.attempts, view.reason


async def test_an_expired_lease_is_requeued_and_the_vanished_workers_late_result_is_refused(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock, **LEASES) as b, connect(b.addr, TOKEN) as client:
        reaper = LeaseReaper(b.broker, clock, every_s=3600)
        with anyio.fail_after(NET_S):
            job_id = await client.submit(["true"], max_attempts=2)
        async with worker_conn(b, "w1") as (w1, _):
            job = await take_job(w1)
            assert (job.job_id, job.attempt, job.deadline_ms) == (job_id, 1, clock.now_ms() + TTL_MS)
            clock.advance(TTL_S)
            assert await reaper.reap_once(clock.now_ms()) == []  # still within its deadline
            clock.advance(1)
            (reaped,) = await reaper.reap_once(clock.now_ms())
            assert (reaped.job_id, reaped.state) == (job_id, "queued")
            state, worker, attempts, reason = await state_of(b, job_id)
            assert (state, worker, attempts) == ("queued", None, 1)
            assert "w1" in (reason or "")
            with anyio.fail_after(NET_S):
                renewed = await w1.request(lambda rid: RenewLeases(rid=rid, leases=[ref(job)]))
            assert renewed.lost == [ref(job)]  # its heartbeat tells the worker to stop the job
            async with worker_conn(b, "w2") as (w2, _):
                again = await take_job(w2)
                assert (again.job_id, again.attempt) == (job_id, 2)
                assert again.lease != job.lease  # a new fencing token (random, never reused)
                with capture_logs() as logs:
                    assert await complete(w1, job, 0) == 4000  # the vanished worker comes back too late
                assert b.broker.stale_completions == 1
                assert any(
                    e["event"] == "lease.stale_completion" and e["job_id"] == job_id and e["lease"] == job.lease
                    for e in logs
                ), logs
                assert (await state_of(b, job_id))[:2] == ("running", "w2")
                assert await complete(w2, again, 0) == 0
    # outside the broker: the one recorded outcome is w2's
    async with running_broker(tmp_path, clock, **LEASES) as b:
        assert (await state_of(b, job_id))[:2] == ("succeeded", "w2")


async def test_after_the_last_attempt_an_expired_lease_fails_the_job_naming_the_worker(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock, **LEASES) as b, connect(b.addr, TOKEN) as client:
        with anyio.fail_after(NET_S):
            job_id = await client.submit(["true"], max_attempts=1)
        async with worker_conn(b, "desk-17") as (w, _):
            await take_job(w)
            clock.advance(TTL_S + 1)
            await b.broker.expire_leases(clock.now_ms())
        with anyio.fail_after(NET_S):
            view, attempts = await client.show(job_id)
    assert (view.state, view.exit_code) == ("failed", None)
    assert "desk-17" in (view.reason or "")
    assert [a.outcome for a in attempts] == ["lease_expired"]


async def test_heartbeats_extend_a_lease_past_its_first_deadline(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock, **LEASES) as b, connect(b.addr, TOKEN) as client:
        with anyio.fail_after(NET_S):
            job_id = await client.submit(["true"])
        async with worker_conn(b) as (w, _):
            job = await take_job(w)
            for _ in range(3):
                clock.advance(TTL_S * 2 / 3)
                with anyio.fail_after(NET_S):
                    renewed = await w.request(lambda rid: RenewLeases(rid=rid, leases=[ref(job)]))
                assert (renewed.lost, renewed.deadline_ms) == ([], clock.now_ms() + TTL_MS)
                assert await b.broker.expire_leases(clock.now_ms() + 1) == []
            assert clock.now_ms() >= job.deadline_ms + TTL_MS  # well past the first deadline, still running
            assert (await state_of(b, job_id))[:2] == ("running", "w1")
            clock.advance(TTL_S + 0.001)  # the heartbeats stop
            assert [t.job_id for t in await b.broker.expire_leases(clock.now_ms())] == [job_id]


async def test_the_broker_reaps_expired_leases_on_its_own(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock, **(LEASES | {"reap_every_s": 0.02})) as b, connect(b.addr, TOKEN) as c:
        with anyio.fail_after(NET_S):
            job_id = await c.submit(["true"])
        async with worker_conn(b) as (w, _):
            await take_job(w)
            clock.advance(TTL_S + 1)

            async def requeued() -> bool:
                return (await state_of(b, job_id))[0] == "queued"

            await eventually(requeued, within_s=5)


async def test_a_broker_restart_does_not_reap_leases_whose_worker_reattaches_within_one_ttl(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock, **LEASES) as b, connect(b.addr, TOKEN) as client:
        with anyio.fail_after(NET_S):
            job_id = await client.submit(["true"])
        async with worker_conn(b) as (w, _):
            job = await take_job(w)
    clock.advance(TTL_S * 3)  # the broker was down for longer than a TTL: the stored deadline has passed
    async with running_broker(tmp_path, clock, **LEASES) as b:
        assert await b.broker.expire_leases(clock.now_ms() + 1) == []
        clock.advance(TTL_S - 1)
        assert await b.broker.expire_leases(clock.now_ms()) == []
        assert (await state_of(b, job_id))[:2] == ("running", "w1")
        async with worker_conn(b, "w1", running=[ref(job)]) as (w, lost):
            assert lost == []  # re-attached: it keeps running the job under the same lease
            clock.advance(TTL_S - 1)  # re-attaching renewed the lease for one more TTL
            assert await b.broker.expire_leases(clock.now_ms()) == []
            assert await complete(w, job, 0) == 0
        assert (await state_of(b, job_id))[0] == "succeeded"


async def test_after_a_restart_a_lease_whose_worker_never_returns_is_reaped_after_one_ttl(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock, **LEASES) as b, connect(b.addr, TOKEN) as client:
        with anyio.fail_after(NET_S):
            job_id = await client.submit(["true"])
        async with worker_conn(b) as (w, _):
            await take_job(w)
    clock.advance(TTL_S * 3)
    async with running_broker(tmp_path, clock, **LEASES) as b:
        clock.advance(TTL_S + 1)
        (reaped,) = await b.broker.expire_leases(clock.now_ms())
        assert (reaped.job_id, reaped.state) == (job_id, "queued")
        assert "w1" in (reaped.reason or "")

"""Fencing tokens through a real broker with two worker connections: a lease's token cannot be guessed,
and only the worker it was granted to may end it. Issue 16: the token was a counter from 1, checked
against the job alone, so any worker could record the result of a job leased to another."""

from __future__ import annotations

from pathlib import Path

import anyio
from structlog.testing import capture_logs

from gridd.client import connect
from gridd.client.connection import Connection
from gridd.protocol.errors import ErrorCode
from gridd.protocol.messages import CompleteJobs, JobResult, LeasedJob, RenewLeases, ReturnLeases
from tests.broker.test_leases import LEASES, NET_S, complete, ref, state_of, take_job, worker_conn
from tests.clock import FakeClock
from tests.conftest import TOKEN, running_broker


async def _complete_as(conn: Connection, job_id: str, lease: int, exit_code: int, stdout: bytes) -> int:
    res = JobResult(
        job_id=job_id, lease=lease, exit_code=exit_code, outcome="exited", started_ms=1, ended_ms=2, stdout=stdout
    )
    with anyio.fail_after(NET_S):
        (outcome,) = (await conn.request(lambda rid: CompleteJobs(rid=rid, results=[res]))).outcomes
    return int(outcome.code)


async def test_a_worker_cannot_record_the_result_of_a_job_leased_to_another_and_the_real_one_lands(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock, **LEASES) as b, connect(b.addr, TOKEN) as client:
        with anyio.fail_after(NET_S):
            job_id = await client.submit(["true"], max_attempts=1)
        async with worker_conn(b, "w1") as (w1, _), worker_conn(b, "w2") as (w2, _):
            job: LeasedJob = await take_job(w1)
            # w2 learnt w1's lease (a log, a shared disk): it still may not end, renew or hand back the job.
            with capture_logs() as logs:
                code = await _complete_as(w2, job_id, job.lease, 0, b"forged")
            assert code == ErrorCode.FOREIGN_LEASE
            assert any(
                e["event"] == "lease.foreign_completion"
                and e["log_level"] == "warning"
                and e["job_id"] == job_id
                and e["worker"] == "w2"
                for e in logs
            ), logs
            assert b.broker.foreign_completions == 1
            with anyio.fail_after(NET_S):
                renewed = await w2.request(lambda rid: RenewLeases(rid=rid, leases=[ref(job)]))
                await w2.request(lambda rid: ReturnLeases(rid=rid, leases=[ref(job)]))
            assert renewed.lost == [ref(job)]
            assert (await state_of(b, job_id))[:3] == ("running", "w1", 1)
            assert await _complete_as(w1, job_id, job.lease, 3, b"real") == 0  # the real result lands
        with anyio.fail_after(NET_S):
            view, attempts = await client.show(job_id)
            out, _ = await client.output(job_id, "stdout")
    assert (view.state, view.exit_code, view.worker) == ("failed", 3, "w1")
    assert out == b"real"
    assert [(a.worker, a.exit_code) for a in attempts] == [("w1", 3)]


async def test_the_fencing_token_cannot_be_guessed_by_another_worker(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock, **LEASES) as b, connect(b.addr, TOKEN) as client:
        with anyio.fail_after(NET_S):
            job_id = await client.submit(["true"])
        async with worker_conn(b, "w1") as (w1, _), worker_conn(b, "w2") as (w2, _):
            job = await take_job(w1)
            assert job.lease > 2**32  # drawn from 62 random bits, not counted from 1
            for guess in range(1, 20):  # what a counter from 1 would have given, for its first attempts
                assert await _complete_as(w2, job_id, guess, 0, b"forged") == ErrorCode.STALE_LEASE
            assert (await state_of(b, job_id))[:2] == ("running", "w1")
            assert await complete(w1, job) == 0
        assert (await state_of(b, job_id))[:2] == ("succeeded", "w1")

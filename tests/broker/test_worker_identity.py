"""A worker name cannot be squatted: only the worker instance a lease was granted to (the id it keeps in its
work dir) may re-attach it or have it failed by a restart, also across a broker restart. Issue 16: a peer
registering the name of a disconnected worker with restarted=True failed that worker's jobs."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from gridd.client import connect
from gridd.client.connection import Connection, open_connection
from gridd.protocol.errors import WorkerNameInUse
from gridd.protocol.messages import LeasedJob, LeaseRef, RegisterWorker
from tests.broker.test_leases import LEASES, NET_S, TTL_S, complete, ref, state_of, take_job
from tests.clock import FakeClock
from tests.conftest import TOKEN, BrokerHandle, running_broker


@asynccontextmanager
async def worker_as(
    b: BrokerHandle, instance: str, *, restarted: bool = True, running: Sequence[LeaseRef] = (), name: str = "desk"
) -> AsyncIterator[tuple[Connection, list[LeaseRef]]]:
    """A worker of name `name` and instance `instance`, speaking the protocol by hand."""
    with anyio.fail_after(NET_S):
        async with open_connection(b.addr, TOKEN, role="worker", name=name) as conn:
            reply = await conn.request(
                lambda rid: RegisterWorker(
                    rid=rid,
                    host="test-host",
                    slots=4,
                    queues=["default"],
                    running=list(running),
                    restarted=restarted,
                    instance=instance,
                )
            )
            yield conn, list(reply.lost)


@pytest.mark.parametrize("broker_restarts", [False, True])
async def test_a_squatter_of_a_disconnected_workers_name_neither_fails_nor_takes_its_jobs(
    tmp_path: Path, broker_restarts: bool
) -> None:
    clock = FakeClock()
    real, squatter = secrets.token_hex(16), secrets.token_hex(16)
    async with running_broker(tmp_path, clock, **LEASES) as b, connect(b.addr, TOKEN) as client:
        with anyio.fail_after(NET_S):
            for _ in range(2):
                await client.submit(["true"], max_attempts=1)
        async with worker_as(b, real) as (w, _):
            jobs = [await take_job(w), await take_job(w)]
        # The real worker is away now, its jobs still running there.
        if not broker_restarts:
            await _squat_then_return(b, squatter, real, jobs)
    if broker_restarts:  # the broker must have stored which instance holds each lease
        clock.advance(TTL_S / 2)
        async with running_broker(tmp_path, clock, **LEASES) as b:
            await _squat_then_return(b, squatter, real, jobs)


async def _squat_then_return(b: BrokerHandle, squatter: str, real: str, jobs: list[LeasedJob]) -> None:
    async with worker_as(b, squatter, restarted=True, running=[]) as (_, lost):
        assert lost == []
        for job in jobs:  # not failed ("worker restarted"), not queued again, no attempt spent
            assert (await state_of(b, job.job_id)) == ("running", "desk", 1, None)
        # Nor can it take them over by naming them: it does not hold them.
    async with worker_as(b, squatter, restarted=False, running=[ref(j) for j in jobs]) as (_, lost):
        assert lost == [ref(j) for j in jobs]
    for job in jobs:
        assert (await state_of(b, job.job_id))[:2] == ("running", "desk")
    # The real worker comes back (the same process: restarted=False) and its results land.
    async with worker_as(b, real, restarted=False, running=[ref(j) for j in jobs]) as (w, lost):
        assert lost == []
        assert [await complete(w, job, 0) for job in jobs] == [0, 0]
    for job in jobs:
        assert (await state_of(b, job.job_id))[:3] == ("succeeded", "desk", 1)


async def test_a_restarted_worker_instance_still_fails_the_leases_it_held_when_it_died(tmp_path: Path) -> None:
    """What restarted=True is for keeps working: the same instance (its work dir kept) came back as a new
    process, so the jobs it was running died with the old one."""
    clock = FakeClock()
    me = secrets.token_hex(16)
    async with running_broker(tmp_path, clock, **LEASES) as b, connect(b.addr, TOKEN) as client:
        with anyio.fail_after(NET_S):
            job_id = await client.submit(["true"], max_attempts=1)
        async with worker_as(b, me) as (w, _):
            await take_job(w)
        async with worker_as(b, me, restarted=True) as (_, lost):
            assert lost == []
            state, worker, attempts, reason = await state_of(b, job_id)
        assert (state, attempts) == ("failed", 1) and "worker restarted" in (reason or "")


async def test_a_name_held_by_a_live_connection_is_refused_to_a_second_whatever_its_instance(tmp_path: Path) -> None:
    clock = FakeClock()
    me = secrets.token_hex(16)
    async with running_broker(tmp_path, clock, **LEASES) as b, connect(b.addr, TOKEN) as client:
        with anyio.fail_after(NET_S):
            job_id = await client.submit(["true"])
        async with worker_as(b, me) as (w, _):
            job = await take_job(w)
            for instance in (secrets.token_hex(16), me):
                with pytest.raises(WorkerNameInUse):
                    async with worker_as(b, instance, restarted=True):
                        pass
            assert await complete(w, job, 0) == 0
        assert (await state_of(b, job_id))[:2] == ("succeeded", "desk")

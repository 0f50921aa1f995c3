"""Gang jobs (submit --gang N) on a real broker over TCP, workers speaking the protocol by hand and time from a
FakeClock: a gang is leased whole to N distinct waiting workers, each member with its rank; a free worker runs
smaller jobs while the gang is young, and is held for it once it has waited RESERVE_AFTER_MS; a member's failure
or lapsed lease ends the attempt (the others' leases are no longer current) and the gang runs again as one;
its output is its members' in rank order; `why` names a gang larger than the workers that could run it."""

from __future__ import annotations

from collections.abc import Awaitable
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest

from gridd.broker.gangs import RESERVE_AFTER_MS
from gridd.client import Client
from gridd.client.connection import Connection
from gridd.protocol import features
from gridd.protocol.errors import InvalidRequest
from gridd.protocol.messages import (
    CompleteJobs,
    JobResult,
    JobSpec,
    LeasedJob,
    LeaseRef,
    RenewLeases,
    ReturnLeases,
    SubmitJobs,
    TaskCall,
)
from gridd.protocol.states import JobState as S
from tests.broker.test_leases import LEASES, NET_S, complete, ref, take_job, worker_conn
from tests.clock import FakeClock
from tests.conftest import BrokerHandle, client_of, running_broker
from tests.polling import eventually


def gang_env(job: LeasedJob) -> tuple[str, str, str]:
    env = job.spec.env
    return env["GRIDD_GANG_SIZE"], env["GRIDD_GANG_RANK"], env["GRIDD_GANG_WORKERS"]


async def lost_on_renewal(conn: Connection, job: LeasedJob) -> list[LeaseRef]:
    with anyio.fail_after(NET_S):
        return list((await conn.request(lambda rid: RenewLeases(rid=rid, leases=[ref(job)]))).lost)


async def finish(conn: Connection, job: LeasedJob, exit_code: int, stdout: bytes) -> int:
    res = JobResult(
        job_id=job.job_id,
        lease=job.lease,
        exit_code=exit_code,
        outcome="exited",
        started_ms=1,
        ended_ms=2,
        stdout=stdout,
    )
    with anyio.fail_after(NET_S):
        (outcome,) = (await conn.request(lambda rid: CompleteJobs(rid=rid, results=[res]))).outcomes
    return int(outcome.code)


async def test_a_gang_is_leased_whole_to_distinct_workers_and_succeeds_with_its_members_output_by_rank(
    tmp_path: Path,
) -> None:
    async with (
        running_broker(tmp_path, FakeClock(), **LEASES) as b,
        client_of(b) as client,
        worker_conn(b, "w1") as (w1, _),
        worker_conn(b, "w2") as (w2, _),
    ):
        (gang,) = await client.submit_many([JobSpec(argv=["mpirun"], gang=2)])
        members: dict[str, LeasedJob] = {}
        async with anyio.create_task_group() as tg:

            async def ask(name: str, conn: Connection) -> None:
                members[name] = await take_job(conn)

            tg.start_soon(ask, "w1", w1)
            await eventually(lambda: _state_is(client, gang, S.QUEUED))
            assert members == {}  # one waiting worker is not enough: nothing leased
            tg.start_soon(ask, "w2", w2)
        assert {m.job_id for m in members.values()} == {gang}
        by_rank = sorted(members.items(), key=lambda m: m[1].spec.env["GRIDD_GANG_RANK"])
        order = ",".join(name for name, _ in by_rank)
        assert [gang_env(m) for _, m in by_rank] == [("2", "0", order), ("2", "1", order)]
        assert [m.spec.env["GRIDD_GANG_HOSTS"] for _, m in by_rank] == ["test-host,test-host"] * 2
        assert len({m.lease for m in members.values()}) == 2  # each member its own fencing token
        view, _ = await client.show(gang)
        assert (view.state, view.gang, view.attempts, view.worker) == (S.RUNNING, 2, 1, by_rank[0][0])

        assert await _running(client) == {"w1": [gang], "w2": [gang]}  # `gridd workers`: both run it
        conns = {"w1": w1, "w2": w2}
        (first, m1), (second, m2) = by_rank[1], by_rank[0]  # rank 1 ends first
        assert await finish(conns[first], m1, 0, b"from rank 1\n") == 0
        assert (await client.show(gang))[0].state == S.RUNNING  # rank 0 still runs
        assert await _running(client) == {first: [], second: [gang]}
        assert await lost_on_renewal(conns[second], m2) == []  # and its lease is still current
        assert await finish(conns[second], m2, 0, b"from rank 0\n") == 0
        view, attempts = await client.show(gang)
        assert (view.state, len(attempts)) == (S.SUCCEEDED, 1)
        assert await _running(client) == {"w1": [], "w2": []}
        out, _ = await client.output(gang)
        assert out == b"from rank 0\nfrom rank 1\n"
        assert await finish(conns[first], m1, 0, b"again") != 0  # a member's result counts once


async def test_a_members_failure_ends_the_attempt_its_partner_is_stopped_and_the_gang_runs_again_as_one(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with (
        running_broker(tmp_path, clock, **LEASES) as b,
        client_of(b) as client,
        worker_conn(b, "w1") as (w1, _),
        worker_conn(b, "w2") as (w2, _),
    ):
        (gang,) = await client.submit_many([JobSpec(argv=["mpirun"], gang=2, max_attempts=2, retry_delay_s=1)])
        with anyio.fail_after(NET_S):
            a, b2 = await both(take_job(w1), take_job(w2))
        assert await finish(w2, b2, 3, b"rank failed\n") == 0
        view, attempts = await client.show(gang)
        assert (view.state, view.attempts, len(attempts)) == (S.QUEUED, 1, 1)
        assert (attempts[0].exit_code, attempts[0].worker) == (3, "w2")  # recorded where it failed
        assert view.reason == f"gang member {b2.spec.env['GRIDD_GANG_RANK']} on worker w2 exited with status 3"
        assert await _running(client) == {"w1": [gang], "w2": []}
        assert await lost_on_renewal(w1, a) == [ref(a)]  # its heartbeat tells w1 to stop its member
        assert await _running(client) == {"w1": [], "w2": []}
        assert await complete(w1, a) != 0  # and its late result is refused
        clock.advance(1)  # its retry delay
        b.broker.dispatcher.wake()
        with anyio.fail_after(NET_S):
            a2, b3 = await both(take_job(w1), take_job(w2))
        assert {a2.attempt, b3.attempt} == {2}
        assert {a2.lease, b3.lease}.isdisjoint({a.lease, b2.lease})


async def test_a_lapsed_members_lease_ends_the_gangs_attempt(tmp_path: Path) -> None:
    clock = FakeClock()
    async with (
        running_broker(tmp_path, clock, **LEASES) as b,
        client_of(b) as client,
        worker_conn(b, "w1") as (w1, _),
        worker_conn(b, "w2") as (w2, _),
    ):
        (gang,) = await client.submit_many([JobSpec(argv=["mpirun"], gang=2)])
        with anyio.fail_after(NET_S):
            m1, m2 = await both(take_job(w1), take_job(w2))
        rank0, rank1 = (m1, m2) if m1.spec.env["GRIDD_GANG_RANK"] == "0" else (m2, m1)
        holder = {m1.lease: w1, m2.lease: w2}
        silent = "w2" if holder[rank1.lease] is w2 else "w1"
        clock.advance(LEASES["lease_ttl_s"] - 1)
        assert await lost_on_renewal(holder[rank0.lease], rank0) == []  # rank 0 keeps renewing; rank 1 is silent
        assert await b.broker.expire_leases(clock.now_ms()) == []
        clock.advance(2)
        (lost,) = await b.broker.expire_leases(clock.now_ms())
        assert (lost.job_id, lost.state, lost.worker) == (gang, S.QUEUED, silent)
        assert await lost_on_renewal(holder[rank0.lease], rank0) == [ref(rank0)]
        view, attempts = await client.show(gang)
        assert (view.state, [x.outcome for x in attempts]) == (S.QUEUED, ["lease_expired"])


async def test_free_workers_run_smaller_jobs_while_a_gang_is_young_and_are_held_for_it_once_it_has_aged(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with (
        running_broker(tmp_path, clock, **LEASES) as b,
        client_of(b) as client,
        worker_conn(b, "w1") as (w1, _),
        worker_conn(b, "w2") as (w2, _),
    ):
        long = await client.submit(["sleep", "1h"])
        running = await take_job(w1)  # w1 is busy
        assert running.job_id == long
        (gang,) = await client.submit_many([JobSpec(argv=["mpirun"], gang=2)])
        small = await client.submit(["true"])
        backfilled = await take_job(w2)  # the gang is young: the free worker runs the smaller job
        assert backfilled.job_id == small
        assert await complete(w2, backfilled) == 0

        clock.advance(RESERVE_AFTER_MS / 1000)
        later = await client.submit(["true"])
        got: dict[str, LeasedJob] = {}
        async with anyio.create_task_group() as tg:

            async def ask(name: str, conn: Connection) -> None:
                got[name] = await take_job(conn)

            tg.start_soon(ask, "w2", w2)
            # w2 waits, held for the gang; the smaller job behind it stays queued.
            await eventually(lambda: _holding(b, "w2"))
            assert got == {} and (await client.show(later))[0].state == S.QUEUED
            assert await complete(w1, running) == 0  # w1 frees up
            tg.start_soon(ask, "w1", w1)
        assert {j.job_id for j in got.values()} == {gang}
        assert (await client.show(later))[0].state == S.QUEUED


async def test_why_says_a_gang_needs_more_workers_than_can_run_it_or_that_many_free_at_once(tmp_path: Path) -> None:
    async with (
        running_broker(tmp_path, FakeClock(), **LEASES) as b,
        client_of(b) as client,
        worker_conn(b, "w1"),
        worker_conn(b, "w2"),
    ):
        (gang,) = await client.submit_many([JobSpec(argv=["mpirun"], gang=3)])
        e = await client.why(gang)
        assert e.reason == "a gang of 3 needs 3 workers that can run it at once; only 2 connected workers can: w1, w2"
        assert e.remedy == (
            "1 more worker serving queue 'default' that can run it, or cancel it and submit with a smaller --gang"
        )
        (pair,) = await client.submit_many([JobSpec(argv=["mpirun"], gang=2)])
        e = await client.why(pair)
        assert e.reason == (
            "queued: a gang of 2 starts when 2 workers that can run it are free at once; 2 are now: w1, w2"
        )


async def test_a_python_task_cannot_be_a_gang(tmp_path: Path) -> None:
    async with running_broker(tmp_path, FakeClock(), **LEASES) as b, client_of(b) as client:
        spec = JobSpec(argv=["t"], task=TaskCall(name="mod:fn"), gang=2)
        with pytest.raises(InvalidRequest, match="a Python task cannot be a gang"):
            await client.submit_many([spec])
        assert await client.jobs() == []


async def both(first: Awaitable[LeasedJob], second: Awaitable[LeasedJob]) -> tuple[LeasedJob, LeasedJob]:
    """Two lease requests waiting at once (a gang is leased only when both are there)."""
    out: dict[int, LeasedJob] = {}

    async def run(i: int, aw: Awaitable[LeasedJob]) -> None:
        out[i] = await aw

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, 0, first)
        tg.start_soon(run, 1, second)
    return out[0], out[1]


async def _running(client: Client) -> dict[str, list[str]]:
    return {w.name: w.jobs for w in await client.workers()}


async def _state_is(client: Client, job_id: str, state: str) -> bool:
    view, _ = await client.show(job_id)
    return bool(view.state == state)


def _holding(b: BrokerHandle, worker: str) -> bool:
    """The dispatcher's last pass held `worker` for a gang."""
    gangs = b.broker.dispatcher.gangs
    return gangs is not None and gangs.holding is not None and worker in gangs.holding[1]


def test_a_gang_is_a_feature_an_older_broker_lacks() -> None:
    submit = SubmitJobs(rid=1, jobs=[JobSpec(argv=["mpirun"], gang=2)])
    assert features.used(submit) == [features.GANG]
    assert features.missing(submit, []) == features.GANG
    assert features.too_old(features.GANG, "b:1").startswith("the broker at b:1 does not know --gang")


async def test_a_reconnecting_worker_keeps_the_member_it_names_and_one_it_does_not_name_ends_the_attempt(
    tmp_path: Path,
) -> None:
    async with running_broker(tmp_path, FakeClock(), **LEASES) as b, client_of(b) as client:
        (gang,) = await client.submit_many([JobSpec(argv=["mpirun"], gang=2)])
        stacks = {name: AsyncExitStack() for name in ("w1", "w2")}
        conns = {name: (await stacks[name].enter_async_context(worker_conn(b, name)))[0] for name in stacks}
        with anyio.fail_after(NET_S):
            m1, m2 = await both(take_job(conns["w1"]), take_job(conns["w2"]))
        held = {"w1": m1, "w2": m2}
        rank1 = next(name for name, m in held.items() if m.spec.env["GRIDD_GANG_RANK"] == "1")
        rank0 = "w2" if rank1 == "w1" else "w1"
        await stacks[rank1].aclose()  # rank 1's worker loses its connection
        async with worker_conn(b, rank1, running=[ref(held[rank1])]) as (_, lost):
            assert lost == []  # and names its member when it comes back: re-attached
            assert (await client.show(gang))[0].state == S.RUNNING
        async with worker_conn(b, rank1) as (_, lost):
            pass  # a new process of that worker, which runs nothing: the member is lost, and the attempt
        view, attempts = await client.show(gang)
        assert (view.state, view.attempts, [a.worker for a in attempts]) == (S.QUEUED, 1, [rank1])
        assert "worker restarted" in (view.reason or "")
        assert await lost_on_renewal(conns[rank0], held[rank0]) == [ref(held[rank0])]  # the other is stopped
        await stacks[rank0].aclose()


async def test_a_member_handed_back_by_a_draining_worker_ends_its_gangs_attempt(tmp_path: Path) -> None:
    clock = FakeClock()
    async with (
        running_broker(tmp_path, clock, **LEASES) as b,
        client_of(b) as client,
        worker_conn(b, "w1") as (w1, _),
        worker_conn(b, "w2") as (w2, _),
    ):
        (gang,) = await client.submit_many([JobSpec(argv=["mpirun"], gang=2)])
        with anyio.fail_after(NET_S):
            m1, m2 = await both(take_job(w1), take_job(w2))
        (conn, member), (other_conn, other) = sorted(
            [(w1, m1), (w2, m2)], key=lambda c: c[1].spec.env["GRIDD_GANG_RANK"], reverse=True
        )  # rank 1 first
        with anyio.fail_after(NET_S):
            await conn.request(lambda rid: ReturnLeases(rid=rid, leases=[ref(member)]))
        (ended,) = await b.broker.expire_leases(clock.now_ms())
        assert (ended.job_id, ended.state) == (gang, S.QUEUED)
        assert await lost_on_renewal(other_conn, other) == [ref(other)]


async def test_a_broker_restart_gives_a_running_gangs_members_one_ttl_to_reattach_and_the_gang_then_succeeds(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    ttl_s = LEASES["lease_ttl_s"]
    async with running_broker(tmp_path, clock, **LEASES) as b, client_of(b) as client:
        (gang,) = await client.submit_many([JobSpec(argv=["mpirun"], gang=2)])
        async with worker_conn(b, "w1") as (w1, _), worker_conn(b, "w2") as (w2, _):
            held = dict(zip(("w1", "w2"), await both(take_job(w1), take_job(w2)), strict=True))
    clock.advance(ttl_s * 3)  # the broker was down for longer than a TTL: every stored deadline has passed
    async with running_broker(tmp_path, clock, **LEASES) as b, client_of(b) as client:
        clock.advance(ttl_s - 1)
        assert await b.broker.expire_leases(clock.now_ms()) == []
        async with (
            worker_conn(b, "w1", running=[ref(held["w1"])]) as (w1, lost1),
            worker_conn(b, "w2", running=[ref(held["w2"])]) as (w2, lost2),
        ):
            assert lost1 == lost2 == []  # both members re-attached, rank 0 and rank 1 alike
            clock.advance(ttl_s - 1)
            assert await b.broker.expire_leases(clock.now_ms()) == []
            assert await finish(w1, held["w1"], 0, b"") == 0
            assert await finish(w2, held["w2"], 0, b"") == 0
        view, attempts = await client.show(gang)
        assert (view.state, len(attempts)) == (S.SUCCEEDED, 1)

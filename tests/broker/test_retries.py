"""Cause-aware retries on a real broker (TCP on 127.0.0.1, SQLite in tmp_path) and on the store itself, with
time from a FakeClock: a failure whose cause is in --retry-on runs again after --retry-delay, then twice as
long each time; one that is not fails the job at once saying why; a lost lease is retried only with `lost`;
the same exit status on 3 different workers makes a job poison (not 3 attempts on one worker), `show` and
`why` say so, and a person's retry clears it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from gridd.broker.store import Store
from gridd.cli import render
from gridd.client import Client, connect
from gridd.client.connection import Connection, open_connection
from gridd.client.taskdef import TaskDef, TaskOptions
from gridd.protocol.errors import ConfigError, InvalidRequest
from gridd.protocol.messages import (
    CompleteJobs,
    JobResult,
    JobSpec,
    LeasedJob,
    RegisterWorker,
    RequestJobs,
    TaskCall,
)
from tests.broker.test_store import lease, lease_one, store_at, submit
from tests.clock import FakeClock
from tests.conftest import TOKEN, BrokerHandle, running_broker

NET_S = 10  # bound on every network await
TTL_S = 30.0
# Time is the test's: the broker's reaper runs only when a test says so.
LEASES: dict[str, Any] = {"lease_ttl_s": TTL_S, "reap_every_s": 3600.0}
BASE_MS = 1_000  # the broker's retry delay, for the store-level tests


def spec(**kw: Any) -> JobSpec:
    return JobSpec(argv=["work"], **kw)


def ended(job: LeasedJob, exit_code: int | None, outcome: str = "exited", message: str = "") -> JobResult:
    return JobResult(
        job_id=job.job_id,
        lease=job.lease,
        exit_code=exit_code,
        outcome=outcome,
        started_ms=1,
        ended_ms=2,
        message=message,
    )


@asynccontextmanager
async def worker(b: BrokerHandle, name: str) -> AsyncIterator[Connection]:
    """A worker speaking the protocol by hand: the test says what each attempt of its jobs ends with."""
    with anyio.fail_after(NET_S):
        async with open_connection(b.addr, TOKEN, role="worker", name=name) as conn:
            await conn.request(lambda rid: RegisterWorker(rid=rid, host=name, slots=4, queues=["default"]))
            yield conn


async def run_once(conn: Connection, exit_code: int | None, outcome: str = "exited", message: str = "") -> LeasedJob:
    """Take one job and end its attempt as told."""
    with anyio.fail_after(NET_S):
        (job,) = (await conn.request(lambda rid: RequestJobs(rid=rid, max_jobs=1))).jobs
        res = ended(job, exit_code, outcome, message)
        (o,) = (await conn.request(lambda rid: CompleteJobs(rid=rid, results=[res]))).outcomes
    assert o.code == 0, o
    return job


async def state(client: Client, job_id: str) -> tuple[str, int, bool, str | None]:
    view, _ = await client.show(job_id)
    return view.state, view.attempts, view.poison, view.reason


async def fail_on(store: Store, clock: FakeClock, worker: str, code: int) -> str | None:
    """Lease the one queued job to `worker` and end its attempt with `code`; the state it reaches."""
    job = await lease_one(store, clock, worker)
    (o,), _ = await store.complete_jobs(worker, [ended(job, code)], clock.now_ms(), BASE_MS)
    return o.state


# ---- delays ------------------------------------------------------------------------------------------------


async def test_a_listed_exit_runs_again_after_the_retry_delay_then_twice_as_long(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        (job_id,) = await submit(store, clock, spec(max_attempts=4, retry_on=["exit:75"], retry_delay_s=10))
        for attempt, delay_s in [(1, 10), (2, 20), (3, 40)]:
            job = await lease_one(store, clock)
            assert job.attempt == attempt
            (o,), _ = await store.complete_jobs("w1", [ended(job, 75)], clock.now_ms(), BASE_MS)
            assert o.state == "queued"
            assert await store.next_eligible_ms(clock.now_ms()) == clock.now_ms() + delay_s * 1000
            clock.advance(delay_s - 0.001)
            assert await lease(store, clock) == []  # not before its delay
            clock.advance(0.001)
        job = await lease_one(store, clock)
        (o,), _ = await store.complete_jobs("w1", [ended(job, 75)], clock.now_ms(), BASE_MS)
        view, _ = await store.get_job(job_id)
    assert (o.state, view.state, view.exit_code, view.attempts, view.poison) == ("failed", "failed", 75, 4, False)


async def test_the_doubling_stops_at_an_hour_and_a_job_without_retry_delay_keeps_the_brokers(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        (doubling,) = await submit(store, clock, spec(max_attempts=9, retry_delay_s=1000))
        waits = []
        for _ in range(4):
            await fail_on(store, clock, "w1", 1)
            eligible = await store.next_eligible_ms(clock.now_ms())
            assert eligible is not None
            waits.append((eligible - clock.now_ms()) // 1000)
            clock.advance(waits[-1])
        assert waits == [1000, 2000, 3600, 3600]
        await store.control_jobs("cancel", [doubling], clock.now_ms())  # out of the queue: the next job alone
        await submit(store, clock, spec(max_attempts=3))
        await fail_on(store, clock, "w1", 1)
        assert await store.next_eligible_ms(clock.now_ms()) == clock.now_ms() + BASE_MS  # linear, as before


# ---- causes ------------------------------------------------------------------------------------------------


async def test_a_failure_whose_cause_is_not_listed_fails_the_job_at_once_saying_why(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock, **LEASES) as b, connect(b.addr, TOKEN) as client:
        (exits,) = await client.submit_many([spec(retry_on=["exit:75", "signal:9"], retry_delay_s=0)])
        async with worker(b, "w1") as w:
            await run_once(w, 2, message="exited with status 2")
            assert await state(client, exits) == (
                "failed",
                1,
                False,
                "exited with status 2; exit 2 is not in --retry-on exit:75,signal:9",
            )
            (signals,) = await client.submit_many([spec(retry_on=["exit:75", "signal:9"], retry_delay_s=0)])
            await run_once(w, 128 + 9, "signalled")
            assert (await state(client, signals))[:2] == ("queued", 1)  # signal 9 is listed
            await run_once(w, 128 + 15, "signalled")
            assert await state(client, signals) == (
                "failed",
                2,
                False,
                "signal 15 is not in --retry-on exit:75,signal:9",
            )
            (timeouts,) = await client.submit_many(
                [spec(max_attempts=5, retry_on=["exit:64-78", "timeout"], retry_delay_s=0)]
            )
            await run_once(w, 124, "timed_out")
            await run_once(w, 70)
            assert (await state(client, timeouts))[:2] == ("queued", 2)  # a timeout, then exit 70 of 64-78
            await run_once(w, 124, "exited")  # the command's own 124 is an exit status, not a --timeout
            assert (await state(client, timeouts))[::3] == (
                "failed",
                "exit 124 is not in --retry-on exit:64-78,timeout",
            )
            (errors,) = await client.submit_many([spec(retry_on=["error"], retry_delay_s=0)])
            await run_once(w, 126, "error", "cannot make the working directory")  # the worker's failure
            assert (await state(client, errors))[:2] == ("queued", 1)
            await run_once(w, 126, "not_executable")
            assert (await state(client, errors))[::3] == ("failed", "exit 126 is not in --retry-on error")


async def test_a_lost_lease_is_retried_only_when_lost_is_listed(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock, **LEASES) as b, connect(b.addr, TOKEN) as client:
        lost, exits, plain = await client.submit_many([spec(retry_on=["lost"]), spec(retry_on=["exit:75"]), spec()])
        async with worker(b, "w1") as w:
            with anyio.fail_after(NET_S):
                taken = (await w.request(lambda rid: RequestJobs(rid=rid, max_jobs=3))).jobs
            assert sorted(j.job_id for j in taken) == sorted([lost, exits, plain])
            clock.advance(TTL_S + 1)
            await b.broker.expire_leases(clock.now_ms())
        assert await state(client, lost) == ("queued", 1, False, "lease expired on worker w1 (attempt 1 of 3)")
        assert await state(client, plain) == ("queued", 1, False, "lease expired on worker w1 (attempt 1 of 3)")
        assert await state(client, exits) == (
            "failed",
            1,
            False,
            "lease expired on worker w1 (attempt 1 of 3); lost is not in --retry-on exit:75",
        )
        assert (await client.why(lost)).not_before_ms is None  # a lost lease runs again at once, as before


# ---- poison ------------------------------------------------------------------------------------------------


async def test_the_same_exit_on_three_workers_is_poison_but_three_attempts_on_one_worker_are_not(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        one, many = await submit(store, clock, spec(max_attempts=10, retry_delay_s=0), spec(max_attempts=10))
        for _ in range(4):  # `one` fails four times on w1 alone: the worker may be at fault, it runs again
            assert await fail_on(store, clock, "w1", 3) == "queued"
        await store.control_jobs("hold", [one], clock.now_ms())
        clock.advance(60)  # past `many`'s broker delay
        assert await fail_on(store, clock, "a", 3) == "queued"
        clock.advance(60)
        assert await fail_on(store, clock, "b", 4) == "queued"  # another status: a strike of its own
        clock.advance(60)
        assert await fail_on(store, clock, "b", 3) == "queued"  # b again: still two workers
        clock.advance(60)
        assert await fail_on(store, clock, "c", 3) == "failed"
        view, attempts = await store.get_job(many)
        assert (view.state, view.poison, view.exit_code, view.attempts) == ("failed", True, 3, 4)
        assert view.reason == "poison: exit 3 on workers a, b, c"
        assert [(a.worker, a.exit_code) for a in attempts] == [("a", 3), ("b", 4), ("b", 3), ("c", 3)]
        assert (await store.get_job(one))[0].poison is False

        # A person's retry clears it: its old failures no longer count.
        await store.control_jobs("retry", [many], clock.now_ms())
        assert (await store.get_job(many))[0].poison is False
        assert await fail_on(store, clock, "d", 3) == "queued"
        clock.advance(60)
        assert await fail_on(store, clock, "e", 3) == "queued"


async def test_a_poison_job_says_so_in_show_and_why(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock, **LEASES) as b, connect(b.addr, TOKEN) as client:
        (job_id,) = await client.submit_many([spec(max_attempts=5, retry_on=["exit:1-9"], retry_delay_s=0)])
        for name in ("a", "b", "c"):
            async with worker(b, name) as w:
                await run_once(w, 3, message="exited with status 3")
        view, attempts = await client.show(job_id)
        assert (view.state, view.poison, view.retry_on, view.retry_delay_s) == ("failed", True, ["exit:1-9"], 0.0)
        text = render.show(view, attempts)
        assert "reason       poison: exit 3 on workers a, b, c" in text.splitlines()
        assert "retry on     exit:1-9" in text.splitlines()
        assert "retry delay  0s, doubling each retry up to 3600s" in text.splitlines()
        assert f"poison       yes: it failed the same way on 3 workers; gridd retry {job_id} runs it again" in text
        assert render.job_record(view)["poison"] is True
        e = await client.why(job_id)
        assert e.reason == "failed with exit code 3 on c: poison: exit 3 on workers a, b, c"
        assert (
            e.remedy == f"it failed the same way on 3 workers; mend the command or its input, then gridd retry {job_id}"
        )


# ---- Python tasks ------------------------------------------------------------------------------------------


def _work(x: int) -> int:
    return x


def test_a_task_carries_its_retry_policy_and_refuses_a_cause_it_cannot_read() -> None:
    task = TaskDef(_work, TaskOptions(retry_on=["EXIT:75", "lost"], retry_delay_s=5))
    made = task.spec(task_call())
    assert (made.retry_on, made.retry_delay_s) == (["exit:75", "lost"], 5)
    with pytest.raises(ConfigError, match="retry_on: 'exit:abc' is not a cause"):
        TaskDef(_work, TaskOptions(retry_on=["exit:abc"]))
    with pytest.raises(ConfigError, match="retry_on: 'signal:99': signal wants a number from 1 to 64"):
        task.with_options(retry_on=["signal:99"])


def task_call() -> TaskCall:
    return TaskCall(name="tests.broker.test_retries:_work")


def test_a_spec_whose_causes_are_not_causes_does_not_decode() -> None:
    good = msgspec.msgpack.encode({"argv": ["x"], "retry_on": ["exit:64-78", "signal:9", "lost"]})
    assert msgspec.msgpack.decode(good, type=JobSpec).retry_on == ["exit:64-78", "signal:9", "lost"]
    for bad in (["sometimes"], ["exit:1", "EXIT:2"]):
        with pytest.raises(msgspec.ValidationError):
            msgspec.msgpack.decode(msgspec.msgpack.encode({"argv": ["x"], "retry_on": bad}), type=JobSpec)
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(msgspec.msgpack.encode({"argv": ["x"], "retry_delay_s": -1}), type=JobSpec)


async def test_a_submit_whose_causes_cannot_be_read_is_refused_in_one_line_and_makes_nothing(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, connect(b.addr, TOKEN) as client:
        for bad, why in (
            (["exit:300"], "exit:300"),
            (["exit:0"], "exit:0"),
            (["signal:65"], "signal:65"),
            (["lost", "exit:9-3"], "exit:9-3"),
        ):
            with pytest.raises(InvalidRequest, match=f"--retry-on: '{why}'.*; nothing was submitted"):
                await client.submit_many([JobSpec(argv=["true"], retry_on=bad)])
        assert await client.jobs() == []

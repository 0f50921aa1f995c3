"""Jobs in through two stores on one database at once, as two brokers on one PostgreSQL (and, on SQLite, two
stores on one file): no id is given twice and each submit's ids stay consecutive; one key makes one set of
jobs; completions of a job's dependencies, or of a capped group's running jobs, that commit together
through both stores unblock or cancel each dependent once and pass on every freed token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import anyio

from gridd.broker.store import Ask, Store, open_store
from gridd.broker.store.interface import SubmitKey
from gridd.broker.transitions import Transition
from gridd.protocol.messages import JobResult, JobSpec, LeasedJob
from gridd.protocol.states import JobState
from tests.clock import FakeClock
from tests.conftest import store_location

T = TypeVar("T")
TTL_MS = 30_000
ROUNDS = 8  # races are won by chance: each is run this many times


@asynccontextmanager
async def two_stores(tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    path = store_location(tmp_path)
    with anyio.fail_after(60):
        async with open_store(path) as one, open_store(path) as two:
            yield one, two


async def at_once(*calls: Awaitable[T]) -> list[T]:
    """The calls started in the same turn of the event loop (so each store's batch runs beside the other's)."""
    results: dict[int, T] = {}

    async def run(i: int, call: Awaitable[T]) -> None:
        results[i] = await call

    async with anyio.create_task_group() as tg:
        for i, call in enumerate(calls):
            tg.start_soon(run, i, call)
    return [results[i] for i in range(len(calls))]


async def submit(store: Store, now_ms: int, n: int = 1, attempts: int = 3, **kw: object) -> list[str]:
    specs = [JobSpec(argv=["true"], max_attempts=attempts) for _ in range(n)]
    changed, _ = await store.submit_jobs(specs, now_ms, **kw)  # type: ignore[arg-type]
    return [t.job_id for t in changed]


async def lease(store: Store, now_ms: int, n: int) -> list[LeasedJob]:
    return (await store.lease_for([Ask("w1", [("default", "")], n)], now_ms, TTL_MS))[0]


async def finish(store: Store, job: LeasedJob, now_ms: int, exit_code: int) -> list[Transition]:
    result = JobResult(
        job_id=job.job_id,
        lease=job.lease,
        exit_code=exit_code,
        outcome="exited",
        started_ms=now_ms,
        ended_ms=now_ms,
    )
    outcomes, changed = await store.complete_jobs("w1", [result], now_ms, 1_000)
    assert [o.code for o in outcomes] == [0], outcomes
    return changed


async def test_submits_through_two_stores_at_once_never_give_an_id_twice_and_each_gets_consecutive_ids(
    tmp_path: Path,
) -> None:
    now = FakeClock().now_ms()
    async with two_stores(tmp_path) as (one, two):
        made = await at_once(*(submit(s, now, 3) for _ in range(10) for s in (one, two)))
        ids = [int(i) for ids in made for i in ids]
        assert len(set(ids)) == len(ids) == 60
        for ids_of_one in made:
            first = int(ids_of_one[0])
            assert [int(i) for i in ids_of_one] == [first, first + 1, first + 2]
        after = await submit(two, now)  # and the next goes on from the largest
        assert int(after[0]) == max(ids) + 1


async def test_the_same_key_submitted_through_two_stores_at_once_makes_one_set_of_jobs(tmp_path: Path) -> None:
    now = FakeClock().now_ms()
    async with two_stores(tmp_path) as (one, two):
        for round_ in range(ROUNDS):
            key = SubmitKey(name=f"nightly-{round_}", digest="d1", ttl_ms=3_600_000)
            specs = [JobSpec(argv=["true"], queue="nobody") for _ in range(3)]
            first, second = await at_once(one.submit_keyed(specs, now, key), two.submit_keyed(specs, now, key))
            assert first.job_ids == second.job_ids
            assert sorted([first.replayed, second.replayed]) == [False, True]
        jobs, _ = await one.list_jobs(None, "nobody", 0)
        assert len(jobs) == 3 * ROUNDS


async def test_two_dependencies_succeeding_at_once_through_two_stores_queue_their_dependent_once(
    tmp_path: Path,
) -> None:
    now = FakeClock().now_ms()
    async with two_stores(tmp_path) as (one, two):
        for _ in range(ROUNDS):
            deps = await submit(one, now, 2)
            (dependent,) = await submit(two, now, 1, after=deps)
            a, b = await lease(one, now, 2)
            changed = await at_once(finish(one, a, now, 0), finish(two, b, now, 0))
            queued = [t for ts in changed for t in ts if t.job_id == dependent]
            assert [t.state for t in queued] == [JobState.QUEUED], queued
            (job,) = await lease(two, now, 1)  # and it runs
            assert job.job_id == dependent
            await finish(two, job, now, 0)


async def test_two_dependencies_failing_at_once_through_two_stores_cancel_their_dependent_once(
    tmp_path: Path,
) -> None:
    now = FakeClock().now_ms()
    async with two_stores(tmp_path) as (one, two):
        for _ in range(ROUNDS):
            deps = await submit(one, now, 2, attempts=1)
            (dependent,) = await submit(two, now, 1, after=deps)
            (child,) = await submit(one, now, 1, after=[dependent])
            a, b = await lease(one, now, 2)
            changed = await at_once(finish(one, a, now, 1), finish(two, b, now, 1))
            cancelled = [t for ts in changed for t in ts if t.job_id in (dependent, child)]
            # Each told once, by whichever store cancelled it (the other found it cancelled already).
            assert sorted((t.job_id, t.state) for t in cancelled) == [
                (dependent, JobState.CANCELLED),
                (child, JobState.CANCELLED),
            ], cancelled
            views = await two.get_jobs([dependent, child])
            assert [v.state for v in views] == [JobState.CANCELLED, JobState.CANCELLED]


async def test_a_capped_groups_running_jobs_ending_at_once_through_two_stores_pass_on_every_token(
    tmp_path: Path,
) -> None:
    now = FakeClock().now_ms()
    async with two_stores(tmp_path) as (one, two):
        for _ in range(ROUNDS):
            ids = await submit(one, now, 4, new_group=True, max_running=2)
            a, b = await lease(one, now, 4)  # two tokens: two of the four
            assert {a.job_id, b.job_id} == set(ids[:2])
            await at_once(finish(one, a, now, 0), finish(two, b, now, 0))
            # Both tokens were freed: the other two run now (none is left throttled with a token unused).
            rest = await lease(two, now, 4)
            assert sorted(j.job_id for j in rest) == ids[2:]
            for job in rest:
                await finish(one, job, now, 0)


async def test_a_lane_holding_a_job_queued_through_the_other_store_is_kept_when_one_drops_it(tmp_path: Path) -> None:
    now = FakeClock().now_ms()
    async with two_stores(tmp_path) as (one, two):
        await two.submit_jobs([JobSpec(argv=["true"], queue="fresh")], now)
        await two.submit_jobs([JobSpec(argv=["true"], queue="done")], now)
        ((job,),) = await two.lease_for([Ask("w1", [("done", "")], 1)], now, TTL_MS)
        await finish(two, job, now, 0)
        # `one` decides from its own counts, which never saw either job: both queues look idle to it.
        await one.drop_lanes(["fresh", "done"])
        assert sorted(await two.known_lanes()) == [("fresh", "")]  # what a broker starting now reads

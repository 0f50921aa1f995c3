"""Delayed jobs (submit --at/--in) on a real broker, time from a FakeClock: a job is `scheduled` and counted so
until its start time, never leased before it, queued at it (or waiting, while dependencies remain); release
runs it now, a hold then a release keeps its time; a broker down at that moment queues it as it starts; and
the promoter, asleep until the earliest start time, wakes for a sooner job without polling."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

import gridd.broker.store.start_times as start_times
from gridd.broker import transitions as tr
from gridd.broker.schema import migrate
from gridd.broker.transitions import Move
from gridd.client import Client
from gridd.protocol.errors import IllegalTransition, InvalidRequest
from gridd.protocol.messages import JobSpec, LeasedJob
from gridd.protocol.states import JobState as S
from tests.broker.test_leases import LEASES, NET_S, take_job, worker_conn
from tests.broker.test_metrics import _get as metrics_get
from tests.broker.test_metrics import _samples as metrics_samples
from tests.broker.test_store import lease, result, spec, store_at
from tests.clock import FakeClock
from tests.conftest import client_of, running_broker
from tests.polling import eventually

MINUTE_MS = 60_000


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


async def state_of(client: Client, job_id: str) -> str:
    view, _ = await client.show(job_id)
    return view.state


async def test_a_job_submitted_for_90_minutes_on_is_scheduled_and_counted_not_leased_then_runs_at_its_time(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock, **LEASES) as b, client_of(b) as client:
        start = clock.now_ms() + 90 * MINUTE_MS
        job_id = await client.submit(["true"], at=at(start))
        view, _ = await client.show(job_id)
        assert (view.state, view.start_at_ms) == (S.SCHEDULED, start)
        assert (await client.status()).counts[S.SCHEDULED] == 1
        assert [j.id for j in await client.jobs(state=S.SCHEDULED)] == [job_id]
        why = await client.why(job_id)
        assert why.reason.startswith("scheduled to start at 2023-11-14 23:43:20 UTC, in 1h30m")
        assert why.remedy == f"its start time coming, or gridd release {job_id} to run it now"

        leased: list[LeasedJob] = []
        async with worker_conn(b) as (w1, _), anyio.create_task_group() as tg:

            async def ask() -> None:
                leased.append(await take_job(w1))  # a long poll, answered once a job is leased to it

            tg.start_soon(ask)
            clock.advance(90 * 60 - 0.001)
            assert await b.broker.promoter.promote_due() == []
            assert await state_of(client, job_id) == S.SCHEDULED and leased == []
            clock.advance(0.001)
            (due,) = await b.broker.promoter.promote_due()
            assert (due.job_id, due.previous, due.state) == (job_id, S.SCHEDULED, S.QUEUED)
        assert [(j.job_id, j.attempt) for j in leased] == [(job_id, 1)]
        counts = (await client.status()).counts
        assert (counts[S.SCHEDULED], counts[S.RUNNING]) == (0, 1)


async def test_release_runs_a_scheduled_job_now_and_a_hold_then_release_keeps_its_time(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock, **LEASES) as b, client_of(b) as client:
        start = clock.now_ms() + 90 * MINUTE_MS
        kept = await client.submit(["true"], at=at(start))
        early = await client.submit(["true"], at=at(start))
        for action, state in (("hold", S.HELD), ("release", S.SCHEDULED)):  # the hold undone: back to its time
            (outcome,) = await client.control(action, [kept])
            assert (outcome.code, outcome.state) == (0, state)
        assert (await client.show(kept))[0].start_at_ms == start

        clock.advance(60)
        await client.release(early)  # run it now
        view, _ = await client.show(early)
        assert (view.state, view.start_at_ms) == (S.QUEUED, clock.now_ms())  # its start time is now
        await client.hold(early)
        await client.release(early)
        assert await state_of(client, early) == S.QUEUED  # not put back to wait for the old time

        await client.cancel(kept)
        (outcome,) = await client.control("retry", [kept])
        assert outcome.state == S.SCHEDULED  # a retry of a job cancelled before its time: at its time
        (outcome,) = await client.control("release", [early])
        assert outcome.code != 0 and outcome.message == f"job {early} is not held or scheduled (state=queued)"

        await client.hold(kept)  # held, it does not start at its time either
        clock.advance(2 * 3600)
        assert await b.broker.promoter.promote_due() == []
        assert await state_of(client, kept) == S.HELD
        (outcome,) = await client.control("release", [kept])
        assert outcome.state == S.QUEUED  # its time has passed: it runs now


async def test_the_python_client_takes_a_delay_or_a_time_never_both(tmp_path: Path) -> None:
    async with running_broker(tmp_path, FakeClock(), **LEASES) as b, client_of(b) as client:
        job_id = await client.submit(["true"], delay_s=60)  # from this machine's clock, years past the fake one
        assert await state_of(client, job_id) == S.SCHEDULED
        for bad in ({"delay_s": -1.0}, {"delay_s": float("nan")}, {"delay_s": 1.0, "at": at(0)}):
            with pytest.raises(InvalidRequest):
                await client.submit(["true"], **bad)  # type: ignore[arg-type]
        assert len(await client.jobs()) == 1  # nothing more was created


async def test_a_broker_down_at_the_start_time_queues_the_job_as_it_starts(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock, **LEASES) as b, client_of(b) as client:
        job_id = await client.submit(["true"], at=at(clock.now_ms() + 90 * MINUTE_MS))
        assert await state_of(client, job_id) == S.SCHEDULED
    clock.advance(2 * 3600)  # the broker was down when the job's time came
    async with running_broker(tmp_path, clock, **LEASES) as b, client_of(b) as client:
        # Nobody drives the promoter here: its first pass ran before the broker reported it had started.
        counts = (await client.status()).counts
        assert (counts[S.SCHEDULED], counts[S.QUEUED]) == (0, 1)
        async with worker_conn(b) as (w1, _):
            assert (await take_job(w1)).job_id == job_id


async def test_the_promoter_sleeps_until_the_earliest_start_and_wakes_for_a_sooner_job(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock, **LEASES) as b, client_of(b) as client:
        later = await client.submit(["true"], at=at(clock.now_ms() + 90 * MINUTE_MS))
        await eventually(lambda: b.broker.promoter.next_ms == clock.now_ms() + 90 * MINUTE_MS)
        # Asleep until then (a minute at most); a job due in a second must not wait for that.
        sooner = await client.submit(["true"], at=at(clock.now_ms() + 1000))
        clock.advance(1)
        await eventually(lambda: state_of(client, sooner), NET_S, holds=lambda state: state == S.QUEUED)
        assert await state_of(client, later) == S.SCHEDULED


async def test_a_scheduled_job_with_pending_dependencies_waits_for_them_after_its_time(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        (first,), _ = await store.submit_jobs([spec()], clock.now_ms())
        timed = JobSpec(argv=["true"], start_at_ms=clock.now_ms() + MINUTE_MS)
        (late,), _ = await store.submit_jobs([timed], clock.now_ms(), after=[first.job_id])
        assert late.state == S.SCHEDULED
        clock.advance(60)
        (due,), next_ms = await store.promote_due(clock.now_ms(), 10)
        assert (due.job_id, due.state, next_ms) == (late.job_id, S.WAITING, None)
        (job,) = await lease(store, clock)
        _, changed = await store.complete_jobs("w1", [result(job)], clock.now_ms(), 0)
        assert [(t.job_id, t.state) for t in changed if t.job_id == late.job_id] == [(late.job_id, S.QUEUED)]


async def test_a_start_time_now_or_past_queues_the_job_at_once_and_promotion_goes_in_batches(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    now = clock.now_ms()
    async with store_at(tmp_path) as store:
        changed, _ = await store.submit_jobs(
            [spec(start_at_ms=now), spec(start_at_ms=now - 3_600_000), spec(start_at_ms=now + 1)], now
        )
        assert [t.state for t in changed] == [S.QUEUED, S.QUEUED, S.SCHEDULED]
        many, _ = await store.submit_jobs([spec(start_at_ms=now + 5 + i) for i in range(5)], now)
        clock.advance(0.006)  # due: now + 1, + 5 and + 6
        first, next_ms = await store.promote_due(clock.now_ms(), 3)
        assert [t.job_id for t in first] == [changed[2].job_id, many[0].job_id, many[1].job_id]  # earliest first
        assert next_ms == now + 7
        assert await store.promote_due(clock.now_ms(), 3) == ([], now + 7)


@pytest.mark.backends("sqlite")  # SQLite's query planner (PostgreSQL's reads only the due batch, checked by hand)
def test_the_promoter_reads_the_scheduled_jobs_index_only_never_every_scheduled_job(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "plan.db")
    migrate(db)
    for text, params in ((start_times._NEXT_SQL, ()), (start_times._PROMOTE_SQL, (0, 500))):
        plan = " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {text}", params))
        assert "jobs_scheduled" in plan and "TEMP B-TREE" not in plan, plan  # no sort of them all
    db.close()


async def test_metrics_count_scheduled_jobs_by_queue(tmp_path: Path) -> None:
    async with running_broker(tmp_path, metrics="127.0.0.1:0") as b, client_of(b) as client:
        await client.submit(["true"], queue="nightly", delay_s=3600)
        assert b.broker.metrics_port
        code, text = await metrics_get(b.broker.metrics_port)
    assert code == 200
    jobs = {key: value for key, value in metrics_samples(text).items() if key[0] == "gridd_jobs"}
    assert jobs[("gridd_jobs", frozenset({("queue", "nightly"), ("state", "scheduled")}))] == 1


async def test_a_capped_group_scheduled_together_runs_max_running_at_a_time_from_its_start(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        timed = [spec(start_at_ms=clock.now_ms() + MINUTE_MS) for _ in range(3)]
        changed, _ = await store.submit_jobs(timed, clock.now_ms(), new_group=True, max_running=2)
        assert {t.state for t in changed} == {S.SCHEDULED}
        clock.advance(60)
        assert len((await store.promote_due(clock.now_ms(), 10))[0]) == 3
        assert len(await lease(store, clock, n=3)) == 2  # the group's two tokens, not none, not three


def test_the_table_schedules_a_job_whose_time_is_ahead_and_only_its_release_skips_the_wait() -> None:
    assert tr.step(tr.NEW, Move.SUBMIT, start_ahead=True) == S.SCHEDULED
    assert tr.step(tr.NEW, Move.SUBMIT, pending_deps=1, start_ahead=True) == S.SCHEDULED  # time first
    assert tr.step(S.HELD, Move.RELEASE, start_ahead=True) == S.SCHEDULED  # a hold undone
    assert tr.step(S.CANCELLED, Move.RETRY, start_ahead=True) == S.SCHEDULED
    assert tr.step(S.SCHEDULED, Move.RELEASE, start_ahead=True) == S.QUEUED  # "run it now"
    assert tr.step(S.SCHEDULED, Move.RELEASE, pending_deps=1) == S.WAITING
    assert tr.step(S.SCHEDULED, Move.DUE, pending_deps=2) == S.WAITING
    assert tr.step(S.RUNNING, Move.REQUEUE, start_ahead=True) == S.QUEUED  # a job that ran never waits again
    for move in (Move.LEASE, Move.SUCCEED, Move.RETRY):
        with pytest.raises(IllegalTransition):
            tr.step(S.SCHEDULED, move)

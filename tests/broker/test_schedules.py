"""Periodic schedules on a real broker (and store), time from a FakeClock: a slot fires once, as an ordinary
job that names its schedule; the slots missed while no broker ran follow the schedule's catch-up; two
firings of one slot, from two stores on one database file, make one job; pause, resume and remove; a
submit token manages its own schedules only."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from gridd.broker.store import open_store
from gridd.broker.store.schedule_rows import Fired, Firing
from gridd.client import connect
from gridd.protocol.errors import Forbidden, InvalidRequest, UnknownBundle
from gridd.protocol.messages import JobSpec, JobView
from gridd.protocol.states import JobState
from tests.clock import FakeClock
from tests.conftest import BrokerHandle, client_of, running_broker, running_worker, store_location
from tests.polling import eventually
from tests.tasks import sample  # a module the worker serves (--tasks)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def to(clock: FakeClock, ms: int) -> None:
    clock.advance((ms - clock.now_ms()) / 1000)


async def jobs_of(b: BrokerHandle) -> list[JobView]:
    jobs, _ = await b.broker.store.list_jobs(None, None, 0)
    return sorted(jobs, key=lambda j: int(j.id))


async def test_a_slot_fires_once_at_its_time_as_a_job_that_names_its_schedule(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock) as b, client_of(b) as client:
        view = await client.add_schedule("nightly", "0 2 * * *", ["echo", "hi"], tz="UTC")
        slot = view.next_slot_ms
        assert slot is not None and clock.now_ms() < slot <= clock.now_ms() + DAY_MS and slot % HOUR_MS == 0
        b.broker.schedules.wake()
        await b.broker.schedules.fire_due()
        assert await jobs_of(b) == []  # not before its time

        to(clock, slot - 1)
        await b.broker.schedules.fire_due()
        assert await jobs_of(b) == []

        to(clock, slot)
        b.broker.schedules.wake()  # the timer, woken after the clock moved, fires it
        (job,) = await eventually(lambda: jobs_of(b), holds=lambda js: len(js) == 1)
        for _ in range(3):  # looking again, however often, fires nothing more
            b.broker.schedules.wake()
            await b.broker.schedules.fire_due()
        assert len(await jobs_of(b)) == 1
        shown, _ = await client.show(job.id)
        assert (shown.schedule, shown.argv, shown.state, shown.owner) == ("nightly", ["echo", "hi"], "queued", "admin")

        view, runs = await client.schedule("nightly")
        assert (view.last_fired_ms, view.next_slot_ms) == (slot, slot + DAY_MS)
        assert [(r.slot_ms, r.job_id, r.state) for r in runs] == [(slot, job.id, JobState.QUEUED)]

        to(clock, slot + DAY_MS + 30_000)  # the next day's slot, 30 s late: on time all the same
        await b.broker.schedules.fire_due()
        assert [j.schedule for j in await jobs_of(b)] == ["nightly", "nightly"]


@pytest.mark.parametrize(("catch_up", "fired"), [("all", 6), ("last", 1), ("none", 0)])
async def test_slots_missed_while_no_broker_ran_follow_the_catch_up(tmp_path: Path, catch_up: str, fired: int) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock) as b, client_of(b) as client:
        view = await client.add_schedule("hourly", "@hourly", ["true"], catch_up=catch_up)
    first = view.next_slot_ms
    assert first is not None
    to(clock, first + 5 * HOUR_MS + 30 * 60_000)  # down from before the first slot until 5.5 hours after it
    async with running_broker(tmp_path, clock) as b, client_of(b) as client:
        await b.broker.schedules.fire_due()  # and the timer, at start: either fires each slot, once
        jobs = await jobs_of(b)
        view, runs = await client.schedule("hourly")
        assert len(jobs) == fired and all(j.schedule == "hourly" for j in jobs)
        wanted = [first + h * HOUR_MS for h in range(6)][-fired:] if fired else []
        assert sorted(r.slot_ms for r in runs) == wanted
        assert view.next_slot_ms == first + 6 * HOUR_MS  # from now on, as if never down

        to(clock, first + 6 * HOUR_MS)
        await b.broker.schedules.fire_due()
        assert len(await jobs_of(b)) == fired + 1


async def test_two_stores_on_one_database_firing_the_same_slot_make_one_job(tmp_path: Path) -> None:
    # Two brokers cannot run on one data dir (its lock), but a store shared by several brokers is what the
    # conditional update is for: two stores, each its own connection to one file, fire the slot at once.
    path = store_location(tmp_path)
    now = FakeClock().now_ms()
    slot = now - 1000
    async with open_store(path) as one, open_store(path) as two:
        await one.add_schedule("s", "* * * * *", "UTC", "last", JobSpec(argv=["true"]), slot, "admin", now - 60_000)
        firing = Firing("s", slot, slot + 60_000, [slot])
        results: list[list[Fired]] = []

        async def fire(store: object) -> None:
            results.append(await store.fire_schedules([firing], now))  # type: ignore[attr-defined]

        async with anyio.create_task_group() as tg:
            tg.start_soon(fire, one)
            tg.start_soon(fire, two)
        outcomes = sorted((r[0] for r in results), key=lambda f: f.raced)
        assert [len(o.transitions) for o in outcomes] == [1, 0] and [o.raced for o in outcomes] == [False, True]
        assert (await one.fire_schedules([firing], now))[0].raced  # and again later: still nothing
        jobs, _ = await two.list_jobs(None, None, 0)
        assert [j.schedule for j in jobs] == ["s"]
        view, runs = await two.get_schedule("s", 10)
        assert view.next_slot_ms == slot + 60_000 and [r.slot_ms for r in runs] == [slot]


async def test_pause_fires_nothing_and_resume_goes_on_from_the_next_slot(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock) as b, client_of(b) as client:
        view = await client.add_schedule("h", "@hourly", ["true"], catch_up="all")
        first = view.next_slot_ms
        assert first is not None
        paused = await client.change_schedule("h", "pause")
        assert paused.paused
        to(clock, first + 2 * HOUR_MS + 60_000)
        await b.broker.schedules.fire_due()
        assert await jobs_of(b) == []
        resumed = await client.change_schedule("h", "resume")
        assert not resumed.paused and resumed.next_slot_ms == first + 3 * HOUR_MS  # the pause is not caught up
        await b.broker.schedules.fire_due()
        assert await jobs_of(b) == []
        to(clock, first + 3 * HOUR_MS)
        await b.broker.schedules.fire_due()
        (job,) = await jobs_of(b)

        removed = await client.change_schedule("h", "remove")
        assert removed.name == "h" and await client.schedules() == []
        to(clock, first + 5 * HOUR_MS)
        await b.broker.schedules.fire_due()
        assert [j.id for j in await jobs_of(b)] == [job.id]  # its jobs stay, and no more come
        with pytest.raises(InvalidRequest, match="no schedule is named 'h'"):
            await client.schedule("h")


async def test_what_cannot_be_scheduled_is_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    async with running_broker(tmp_path, FakeClock()) as b, client_of(b) as client:
        with pytest.raises(InvalidRequest, match="bad minute"):
            await client.add_schedule("x", "61 * * * *", ["true"])
        with pytest.raises(InvalidRequest, match="unknown time zone"):
            await client.add_schedule("x", "@daily", ["true"], tz="Mars/Olympus")
        with pytest.raises(UnknownBundle, match="no bundle is named 'nosuch'"):
            await client.add_schedule("x", "@daily", JobSpec(argv=["true"], bundle="nosuch"))
        assert await client.schedules() == []
        await client.add_schedule("x", "@daily", ["true"])
        with pytest.raises(InvalidRequest, match="exists already"):
            await client.add_schedule("x", "@hourly", ["false"])
        (kept,) = await client.schedules()
        assert (kept.cron, kept.argv) == ("@daily", ["true"])
        with pytest.raises(InvalidRequest, match="no schedule is named 'nope'"):
            await client.change_schedule("nope", "pause")


async def test_a_submit_token_manages_its_own_schedules_and_a_read_token_sees_them_without_arguments(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock) as b, client_of(b) as admin:
        ci, _ = await admin.create_token("ci", "submit")
        other, _ = await admin.create_token("other", "submit")
        viewer, _ = await admin.create_token("viewer", "read")
        async with connect(b.addr, ci) as c:
            mine = await c.add_schedule("ci-nightly", "@daily", ["make", "test"])
        assert mine.owner == "ci"
        await admin.add_schedule("admins", "@daily", ["backup", "--all"])
        async with connect(b.addr, other) as o:
            assert await o.schedules() == []  # only its own
            with pytest.raises(Forbidden, match="it belongs to 'ci'"):
                await o.change_schedule("ci-nightly", "remove")
            with pytest.raises(Forbidden, match="it belongs to 'ci'"):
                await o.schedule("ci-nightly")
        async with connect(b.addr, viewer) as v:
            assert [(s.name, s.argv) for s in await v.schedules()] == [("admins", ["backup"]), ("ci-nightly", ["make"])]
            with pytest.raises(Forbidden):
                await v.add_schedule("mine", "@daily", ["true"])
        # Its jobs are its own, as if it had submitted them.
        to(clock, mine.next_slot_ms or 0)
        await b.broker.schedules.fire_due()
        owners = {j.schedule: j.owner for j in await jobs_of(b)}
        assert owners == {"ci-nightly": "ci", "admins": "admin"}


async def test_its_runs_are_ordinary_jobs_that_workers_run_commands_and_python_tasks(tmp_path: Path) -> None:
    clock = FakeClock()
    async with (
        running_broker(tmp_path, clock) as b,
        running_worker(tmp_path, b.addr, tasks=["tests.tasks.sample"]),
        client_of(b) as client,
    ):
        cmd = await client.add_schedule(
            "cmd", "*/5 * * * *", ["sh", "-c", "echo ran $GRIDD_SCHEDULE $GRIDD_SCHEDULE_SLOT"]
        )
        task = await client.add_task_schedule("task", "*/5 * * * *", sample.add, 40, b=2)
        assert task.argv == ["tests.tasks.sample:add"] and task.task == "tests.tasks.sample:add"
        to(clock, cmd.next_slot_ms or 0)
        await b.broker.schedules.fire_due()
        by_schedule = {j.schedule: j.id for j in await jobs_of(b)}
        finished = await client.wait(list(by_schedule.values()))
        assert {j.state for j in finished} == {JobState.SUCCEEDED}
        out, _ = await client.output(by_schedule["cmd"])
        slot = datetime.fromtimestamp((cmd.next_slot_ms or 0) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert out == f"ran cmd {slot}\n".encode()  # the job is told its schedule and the slot it stands for
        assert await client.handle(by_schedule["task"], sample.add).result() == 42


async def test_a_submit_cannot_claim_a_schedule(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with pytest.raises(InvalidRequest, match="names a schedule only when that schedule submitted it"):
            await client.submit_many([JobSpec(argv=["true"], schedule="nightly")])
        assert await jobs_of(b) == []

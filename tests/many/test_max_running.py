"""`--max-running N`: at most N jobs of one submission run at once, whatever the free slots; and a
capped group still runs to the end when some of its jobs fail, are cancelled, held or released."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.conftest import BrokerHandle, client_of, running_broker, running_worker
from tests.many.helpers import gridd_ok, group_of, ids_of, job_command, max_concurrency, read_marks, wait_all
from tests.polling import eventually

FREE_SLOTS = 8  # two workers of 4 slots


async def test_max_running_is_never_exceeded_and_is_reached_with_more_free_slots(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, slots=4, name="w1"),
        running_worker(tmp_path, b.addr, slots=4, name="w2"),
        client_of(b) as client,
    ):
        ids = ids_of(
            await gridd_ok(
                b,
                tmp_path,
                "submit",
                "--array",
                "1-30",
                "--max-running",
                "3",
                "--",
                *job_command(tmp_path, marks, sleep_s=0.1),
            )
        )
        assert len(ids) == 30
        views = await wait_all(client, ids, within_s=20)
    assert Counter(v.state for v in views) == {"succeeded": 30}
    seen = read_marks(marks)
    assert Counter(m[0] for m in seen) == {"start": 30, "end": 30}
    assert max_concurrency(seen) <= 3
    assert max_concurrency(seen) == 3, "the limit was respected but never used"


async def test_a_capped_group_with_failing_jobs_still_runs_to_the_end(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, slots=4, name="w1"),
        running_worker(tmp_path, b.addr, slots=4, name="w2"),
        client_of(b) as client,
    ):
        command = job_command(tmp_path, marks, sleep_s=0.05, failing=("2", "5", "9"))
        ids = ids_of(
            await gridd_ok(
                b, tmp_path, "submit", "--array", "1-12", "--max-running", "2", "--max-attempts", "2", "--", *command
            )
        )
        views = await wait_all(client, ids, within_s=20)
    assert Counter(v.state for v in views) == {"succeeded": 9, "failed": 3}
    assert {v.argv[-1] for v in views if v.state == "failed"} == {"2", "5", "9"}
    seen = read_marks(marks)
    assert Counter(m[0] for m in seen) == {"start": 15, "end": 15}  # 3 failing jobs ran twice
    assert max_concurrency(seen) <= 2


async def test_cancelling_jobs_of_a_capped_group_passes_their_tokens_on(tmp_path: Path) -> None:
    marks, gate = tmp_path / "marks", tmp_path / "gate"
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, slots=4, name="w1"),
        running_worker(tmp_path, b.addr, slots=4, name="w2"),
        client_of(b) as client,
    ):
        ids = await submit_capped_six(b, tmp_path, marks, gate)
        group = await group_of(client, ids[0])
        most = 0

        async def running_ids() -> list[str]:
            nonlocal most
            now = [v.id for v in await client.jobs(group=group, state="running", limit=0)]
            most = max(most, len(now))
            return now

        async def two_running() -> bool:
            return len(await running_ids()) == 2

        await eventually(two_running, within_s=20)
        first_running = await running_ids()
        queued = [i for i in ids if i not in first_running]
        # Cancel one running job and one queued one: the running job's token goes to the next queued job.
        await client.cancel(first_running[0])
        await client.cancel(queued[-1])

        async def replaced() -> bool:
            now = await running_ids()
            return len(now) == 2 and first_running[0] not in now

        await eventually(replaced, within_s=20)
        gate.touch()
        views = await wait_all(client, [group], within_s=20)
        assert most <= 2
    states = {v.id: v.state for v in views}
    assert states[first_running[0]] == "cancelled"
    assert states[queued[-1]] == "cancelled"
    assert Counter(states.values()) == {"succeeded": 4, "cancelled": 2}


async def test_holding_and_releasing_a_job_of_a_capped_group_does_not_exceed_the_cap(tmp_path: Path) -> None:
    marks, gate = tmp_path / "marks", tmp_path / "gate"
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, slots=4, name="w1"),
        running_worker(tmp_path, b.addr, slots=4, name="w2"),
        client_of(b) as client,
    ):
        ids = await submit_capped_six(b, tmp_path, marks, gate)
        group = await group_of(client, ids[0])

        async def running_ids() -> list[str]:
            return [v.id for v in await client.jobs(group=group, state="running", limit=0)]

        async def two_running() -> bool:
            return len(await running_ids()) == 2

        await eventually(two_running, within_s=20)
        waiting = [i for i in ids if i not in await running_ids()]
        # Hold two queued jobs and release them while both tokens are in use: they must not start.
        await client.hold(waiting[0])
        await client.hold(waiting[1])
        assert (await client.show(waiting[0]))[0].state == "held"
        await client.release(waiting[0])
        await client.release(waiting[1])
        assert {(await client.show(i))[0].state for i in waiting[:2]} == {"queued"}
        # A released job wrongly given a token would be leased at once by the idle slots and block on the
        # gate next to the two running ones: its start mark would show three at once.
        assert sorted(await running_ids()) == sorted(i for i in ids if i not in waiting)

        async def both_started() -> bool:  # leased is not yet started: wait for their processes' marks
            return sum(m[0] == "start" for m in read_marks(marks)) == 2

        await eventually(both_started, within_s=20)
        gate.touch()
        views = await wait_all(client, [group], within_s=20)
    assert Counter(v.state for v in views) == {"succeeded": 6}
    seen = read_marks(marks)
    assert Counter(m[0] for m in seen) == {"start": 6, "end": 6}
    assert max_concurrency(seen) == 2


async def test_max_running_holds_for_a_group_that_waited_for_a_dependency(tmp_path: Path) -> None:
    marks, gate = tmp_path / "marks", tmp_path / "gate"
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, slots=4, name="w1"),
        running_worker(tmp_path, b.addr, slots=4, name="w2"),
        client_of(b) as client,
    ):
        first_command = job_command(tmp_path, tmp_path / "first-marks", gate=gate)
        (first,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--", *first_command))
        ids = ids_of(
            await gridd_ok(
                b,
                tmp_path,
                "submit",
                "--after",
                first,
                "--array",
                "1-12",
                "--max-running",
                "3",
                "--",
                *job_command(tmp_path, marks, sleep_s=0.1),
            )
        )
        gate.touch()
        views = await wait_all(client, [first, *ids], within_s=30)
    assert Counter(v.state for v in views) == {"succeeded": 13}
    seen = read_marks(marks)
    assert max_concurrency(seen) == 3


async def submit_capped_six(b: BrokerHandle, tmp_path: Path, marks: Path, gate: Path) -> list[str]:
    """Six gated jobs of one --array submission, at most 2 running at once; their ids."""
    command = job_command(tmp_path, marks, gate=gate)
    return ids_of(await gridd_ok(b, tmp_path, "submit", "--array", "1-6", "--max-running", "2", "--", *command))

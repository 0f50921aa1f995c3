"""Python tasks against a real broker and a real worker agent serving tests.tasks.sample (issue 4)."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

import gridd
from tests.conftest import client_of, running_broker, running_worker
from tests.polling import eventually
from tests.tasks import sample

pytestmark = pytest.mark.anyio
TASKS = ["tests.tasks.sample"]


async def test_a_typed_call_round_trips_and_records_code_and_worker(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, tasks=TASKS), client_of(b) as c:
        handle = await c.submit_task(sample.add, 40)
        assert await handle.result() == 42
        points = await (await c.submit_task(sample.norms, [sample.Point(3, 4)])).result()
        assert points == [5.0]
        job, attempts = await c.show(handle.id)
    assert job.argv == ["tests.tasks.sample:add"]
    assert job.state == "succeeded" and job.worker == "w1"
    assert attempts[-1].code == sample.__version__ and attempts[-1].worker == "w1"


async def test_a_bad_argument_is_refused_at_submit_and_nothing_is_queued(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as c:
        with pytest.raises(gridd.BadArguments, match="argument `a`"):
            await c.submit_task(sample.add, "forty")
        with pytest.raises(TypeError, match="missing a required argument"):
            await c.submit_task(sample.add)
        records = [sample.Point(1, 2), {"x": "east", "y": 0}]
        with pytest.raises(gridd.BadArguments, match="record 1"):
            _ = [r async for r in c.map(sample.norms, records, batch=10)]
        assert await c.jobs(limit=0) == []


async def test_a_raising_task_reaches_the_caller_with_type_message_and_traceback(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, tasks=TASKS), client_of(b) as c:
        handle = await c.submit_task(sample.boom, "the input was bad")
        with pytest.raises(gridd.TaskFailed) as caught:
            await handle.result()
        stderr, _ = await c.output(handle.id, "stderr")
    err = caught.value
    assert err.remote_type == "ValueError" and err.remote_message == "the input was bad"
    assert "in boom\n    raise ValueError(message)" in err.remote_traceback
    assert "task_runner" not in err.remote_traceback  # the task's frames, not gridd's
    assert err.job_id == handle.id and err.state == "failed"
    assert b"ValueError: the input was bad" in stderr  # `gridd logs --stderr` shows it too


async def test_a_value_of_the_wrong_type_is_an_error_not_a_result(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, tasks=TASKS), client_of(b) as c:
        with pytest.raises(gridd.TaskFailed, match="does not match its annotation"):
            await (await c.submit_task(sample.wrong_type.with_options(max_attempts=1), 7)).result()


async def test_map_over_ten_thousand_records_keeps_their_order(tmp_path: Path) -> None:
    records = list(range(10_000))
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, tasks=TASKS, slots=4),
        client_of(b) as c,
    ):
        ordered = [r async for r in c.map(sample.square, records, batch=250)]
        unordered = [r async for r in c.map(sample.square, iter(records), batch=1000, ordered=False)]
        jobs = await c.jobs(limit=0)
    assert ordered == [x * x for x in records]
    assert sorted(unordered) == sorted(ordered)
    assert len(jobs) == 10_000 // 250 + 10_000 // 1000
    assert {j.group for j in jobs} != {None}  # each map is one group, cancellable as one


async def test_a_batch_that_loses_a_record_is_refused_as_a_failed_attempt(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, tasks=TASKS), client_of(b) as c:
        with pytest.raises(gridd.JobFailed, match="returned 4 results for a batch of 5 records"):
            _ = [r async for r in c.map(sample.drops_one, range(5), batch=5)]
        (job,) = await c.jobs()
        _, attempts = await c.show(job.id)
        (outcome,) = await c.results([job.id])
    assert job.state == "failed" and job.attempts == 2  # tried again, as a failed attempt is
    assert [a.outcome for a in attempts] == ["bad_result", "bad_result"]
    assert outcome.value == b"" and outcome.value_blob is None  # the refused list was not recorded


async def test_payloads_larger_than_a_frame_travel_as_blobs(tmp_path: Path) -> None:
    big = os.urandom(20 * 1024 * 1024)  # more than one 16 MiB frame
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, tasks=TASKS), client_of(b) as c:
        assert await (await c.submit_task(sample.size_of, big)).result() == len(big)
        echoed = await (await c.submit_task(sample.echo, big)).result()
        made = await (await c.submit_task(sample.blob_of, 3 * 1024 * 1024)).result()
    assert echoed == big
    assert len(made) == 3 * 1024 * 1024


async def test_cancelling_a_waiting_handle_stops_its_job(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, tasks=TASKS), client_of(b) as c:
        handle = await c.submit_task(sample.forever.with_options(timeout_s=None))
        await eventually(lambda: _state_is(c, handle.id, "running"))
        failure: list[BaseException] = []
        with anyio.fail_after(30):  # the cancel ends the waiting handle, or the test fails here
            async with anyio.create_task_group() as tg:

                async def wait_for_result() -> None:
                    try:
                        await handle.result()
                    except gridd.JobFailed as exc:
                        failure.append(exc)

                tg.start_soon(wait_for_result)
                await handle.cancel()
    assert isinstance(failure[0], gridd.JobFailed) and failure[0].state == "cancelled"


async def test_blocking_tasks_run_as_many_at_once_as_there_are_slots(tmp_path: Path) -> None:
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, tasks=TASKS, slots=8),
        client_of(b) as c,
    ):
        handles = [await c.submit_task(sample.hold_slot, 1.0) for _ in range(8)]
        spans = [await h.result() for h in handles]
    latest_start = max(s[0] for s in spans)
    earliest_end = min(s[1] for s in spans)
    assert latest_start < earliest_end  # all eight were running at the same moment
    assert len({s[2] for s in spans}) == 8  # each in a thread of its own


async def test_a_thread_task_past_its_timeout_frees_its_slot_for_the_next_at_once(tmp_path: Path) -> None:
    """A plain task cannot be stopped midway: at its timeout the worker reports it timed out and runs the
    next task in another thread, not after the abandoned one returns."""
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, tasks=TASKS, slots=1),
        client_of(b) as c,
    ):
        stuck = await c.submit_task(sample.overstay, 30.0)
        with pytest.raises(gridd.JobFailed, match="timed out after 0.3s"):
            await stuck.result()
        with anyio.fail_after(10):  # well before the abandoned call returns
            assert await (await c.submit_task(sample.add, 1, 1)).result() == 2


async def test_async_and_process_tasks_and_a_process_task_timeout(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, tasks=TASKS), client_of(b) as c:
        assert await (await c.submit_task(sample.nap, 0.01)).result() == "rested"
        x, pid = await (await c.submit_task(sample.where, 3)).result()
        stuck = await c.submit_task(sample.forever)
        with pytest.raises(gridd.JobFailed, match="timed out after 0.5s"):
            await stuck.result()
        view = await stuck.wait()
    assert x == 3 and pid != os.getpid()
    assert view.exit_code == 124


async def test_task_jobs_go_only_to_workers_that_serve_their_module(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as c:
        async with running_worker(tmp_path, b.addr, name="shell-only"):
            handle = await c.submit_task(sample.add, 1, 1)
            command = await c.submit(["true"])
            await c.wait([command])
            assert (await c.show(handle.id))[0].state == "queued"  # the shell worker left it alone
        async with running_worker(tmp_path, b.addr, name="py", tasks=TASKS):
            assert await handle.result() == 2
            (view,) = [w for w in await c.workers() if w.name == "py"]
    assert view.tasks == TASKS


async def test_as_completed_yields_each_job_once_as_it_finishes(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, tasks=TASKS), client_of(b) as c:
        slow = await c.submit_task(sample.nap, 0.5)
        fast = await c.submit_task(sample.nap, 0.0)
        order = [view.id async for view in c.as_completed([slow.id, fast.id])]
    assert order == [fast.id, slow.id]


async def test_results_of_many_jobs_page_under_the_reply_limit(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, tasks=TASKS), client_of(b) as c:
        handles = [await c.submit_task(sample.blob_of, 900 * 1024) for _ in range(12)]  # ~10.5 MiB in all
        await c.wait([h.id for h in handles])
        outcomes = await c.results([h.id for h in handles])
    assert [o.job_id for o in outcomes] == [h.id for h in handles]
    assert all(len(o.value) > 900 * 1024 for o in outcomes)


async def _state_is(c: gridd.Client, job_id: str, state: str) -> bool:
    return (await c.show(job_id))[0].state == state

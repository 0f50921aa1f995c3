"""Keys act on the selected job, as the broker reports: cancel (after a yes), hold, release, retry, and
Enter opens the job's detail with its attempts and output."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
from textual.pilot import Pilot

from gridd.tui.app import GriddApp
from gridd.tui.screens.confirm import ConfirmScreen
from gridd.tui.screens.dashboard import DashboardScreen
from gridd.tui.screens.job_detail import JobDetailScreen
from gridd.tui.widgets.attempts_table import AttemptsTable
from gridd.tui.widgets.job_summary import JobSummary
from gridd.tui.widgets.jobs_table import JobsTable
from gridd.tui.widgets.output_tail import OutputTail
from tests.conftest import TOKEN, client_of, running_broker, running_worker
from tests.polling import eventually
from tests.tui.helpers import state_of

SLEEP = [sys.executable, "-c", "import time; time.sleep(30)"]


async def actions_done(app: GriddApp) -> None:
    """Wait for the job actions in flight (not the event feed, which runs until the app ends)."""
    actions = [w for w in app.workers if w.group == "control"]
    if actions:  # an empty list would mean every worker
        with anyio.fail_after(10):
            await app.workers.wait_for_complete(actions)


async def select(pilot: Pilot[None], jobs: JobsTable, job_id: str) -> None:
    await eventually(lambda: job_id in jobs.rows, settle=pilot.pause)
    jobs.move_cursor(row=jobs.get_row_index(job_id))
    await pilot.pause()
    assert jobs.selected_job_id() == job_id


async def test_cancel_asks_first_and_then_stops_the_running_job(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr), client_of(b) as client:
        sleeper = await client.submit(SLEEP)
        app = GriddApp(b.addr, TOKEN)
        async with app.run_test(size=(120, 36)) as pilot:
            jobs = app.dashboard.query_one(JobsTable)
            await eventually(lambda: state_of(jobs, sleeper) == "running", settle=pilot.pause)
            await select(pilot, jobs, sleeper)

            await pilot.press("c")
            await eventually(lambda: isinstance(app.screen, ConfirmScreen), settle=pilot.pause)
            await pilot.press("n")  # declined: nothing happens
            await eventually(lambda: isinstance(app.screen, DashboardScreen), settle=pilot.pause)
            await actions_done(app)
            assert (await client.show(sleeper))[0].state == "running"

            await pilot.press("c")
            await eventually(lambda: isinstance(app.screen, ConfirmScreen), settle=pilot.pause)
            await pilot.press("y")
            await eventually(lambda: state_of(jobs, sleeper) == "cancelled", settle=pilot.pause)
            job, _ = await client.show(sleeper)
            assert job.state == "cancelled"


async def test_hold_release_and_retry_change_the_selected_job_and_refusals_are_shown(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        # No worker serves this queue, so the job stays queued until we act on it.
        job_id = await client.submit(["true"], queue="idle")
        app = GriddApp(b.addr, TOKEN)
        async with app.run_test(size=(120, 36)) as pilot:
            jobs = app.dashboard.query_one(JobsTable)
            await select(pilot, jobs, job_id)

            await pilot.press("h")
            await eventually(lambda: state_of(jobs, job_id) == "held", settle=pilot.pause)
            assert (await client.show(job_id))[0].state == "held"

            await pilot.press("l")
            await eventually(lambda: state_of(jobs, job_id) == "queued", settle=pilot.pause)

            await pilot.press("r")  # a queued job cannot be retried: the broker's reason is shown
            await actions_done(app)
            await eventually(
                lambda: any("has not finished" in n.message for n in app._notifications), settle=pilot.pause
            )
            assert state_of(jobs, job_id) == "queued"

            await client.cancel(job_id)
            await eventually(lambda: state_of(jobs, job_id) == "cancelled", settle=pilot.pause)
            await pilot.press("r")
            await eventually(lambda: state_of(jobs, job_id) == "queued", settle=pilot.pause)
            assert (await client.show(job_id))[0].state == "queued"


async def test_enter_opens_the_detail_with_attempts_and_output_tails(tmp_path: Path) -> None:
    script = "import sys; print('hello out'); print('oops', file=sys.stderr); sys.exit(4)"
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, name="w7"), client_of(b) as client:
        job_id = await client.submit([sys.executable, "-c", script], max_attempts=2)
        await client.wait([job_id])
        app = GriddApp(b.addr, TOKEN)
        async with app.run_test(size=(80, 24)) as pilot:
            jobs = app.dashboard.query_one(JobsTable)
            await select(pilot, jobs, job_id)
            await pilot.press("enter")
            await eventually(lambda: isinstance(app.screen, JobDetailScreen), settle=pilot.pause)
            detail = app.screen
            attempts = detail.query_one(AttemptsTable)
            await eventually(lambda: attempts.row_count == 2, settle=pilot.pause)
            assert [str(attempts.get_cell(str(n), "worker")) for n in (1, 2)] == ["w7", "w7"]
            assert [str(attempts.get_cell(str(n), "exit")) for n in (1, 2)] == ["4", "4"]
            # Each attempt's accounting: wall time, CPU (user+system) and the max RSS of a Python process.
            for column, unit in (("wall", "s"), ("cpu", "s"), ("maxrss", "M")):
                assert all(str(attempts.get_cell(str(n), column)).endswith(unit) for n in (1, 2)), column
            summary = detail.query_one(JobSummary)
            assert summary.job is not None and summary.job.state == "failed"
            assert "hello out" in detail.query_one("#stdout", OutputTail).text
            assert "oops" in detail.query_one("#stderr", OutputTail).text

            await pilot.press("r")  # keys act on the job shown; the view follows its events
            await eventually(lambda: attempts.row_count == 4, settle=pilot.pause)  # ran again: two more attempts
            await pilot.press("escape")
            await eventually(lambda: isinstance(app.screen, DashboardScreen), settle=pilot.pause)

"""The dashboard against a real broker and a real worker: what it shows, and how it follows the grid."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
from textual.widgets import Footer

from gridd.tui.app import GriddApp
from gridd.tui.widgets.connection_bar import ConnectionBar
from gridd.tui.widgets.jobs_table import JobsTable
from gridd.tui.widgets.queue_counts import QueueCounts
from gridd.tui.widgets.workers_table import WorkersTable
from tests.conftest import TOKEN, client_of, running_broker, running_worker
from tests.polling import eventually

Table = JobsTable | WorkersTable | QueueCounts
SLEEP = [sys.executable, "-c", "import time; time.sleep(30)"]


def tables(app: GriddApp) -> tuple[JobsTable, WorkersTable, QueueCounts]:
    screen = app.dashboard
    return screen.query_one(JobsTable), screen.query_one(WorkersTable), screen.query_one(QueueCounts)


def cell(table: Table, row: str, column: str) -> str | None:
    """The cell's text, or None while the row is not there."""
    return str(table.get_cell(row, column)) if row in table.rows else None


async def test_the_dashboard_shows_workers_counts_and_jobs_as_they_change(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        done = await client.submit([sys.executable, "-c", "print('ok')"])
        app = GriddApp(b.addr, TOKEN)
        async with app.run_test(size=(120, 36)) as pilot, running_worker(tmp_path, b.addr, slots=2, name="w1"):
            jobs, workers, queues = tables(app)

            async def shown(table: Table, row: str, column: str, value: str) -> None:
                await eventually(
                    lambda: cell(table, row, column),
                    what=f"{type(table).__name__} row {row} to show {column}={value}",
                    holds=lambda seen: seen == value,
                    settle=pilot.pause,
                )

            await shown(jobs, done, "state", "succeeded")
            await shown(workers, "w1", "slots", "0/2")
            await shown(queues, "default", "succeeded", "1")

            sleeper = await client.submit(SLEEP)
            await shown(jobs, sleeper, "state", "running")  # a new submission appears, then runs
            assert jobs.selected_job_id() == sleeper  # newest first; a cursor on top follows the newest
            await shown(workers, "w1", "jobs", sleeper)
            await shown(workers, "w1", "state", "busy")
            await shown(queues, "default", "running", "1")
            assert app.dashboard.query_one(ConnectionBar).status == "connected"
            await client.cancel(sleeper)
            await shown(jobs, sleeper, "state", "cancelled")
            await shown(workers, "w1", "state", "idle")
            await shown(queues, "default", "cancelled", "1")
            assert cell(queues, "default", "running") == "0"


async def test_it_is_usable_at_80_by_24_and_q_quits_with_status_0(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        ids = [await client.submit(["true"], queue="other") for _ in range(30)]
        app = GriddApp(b.addr, TOKEN)
        async with app.run_test(size=(80, 24)) as pilot:
            jobs, _, queues = tables(app)

            await eventually(
                lambda: jobs.row_count == 30 and cell(queues, "other", "queued") == "30", settle=pilot.pause
            )
            screen = app.screen.region
            for widget in (jobs, app.dashboard.query_one(Footer), app.dashboard.query_one(ConnectionBar)):
                assert screen.contains_region(widget.region), widget
            assert jobs.region.height >= 8  # room for several rows of jobs
            assert jobs.selected_job_id() == ids[-1]
            await pilot.press("down", "down")
            assert jobs.selected_job_id() == ids[-3]
            await pilot.press("q")
            with anyio.fail_after(5):
                await pilot.pause()
        assert app.return_code == 0


async def test_a_lent_worker_shows_suspended_while_its_owner_is_back(tmp_path: Path) -> None:
    """The workers table follows a worker whose owner takes the machine back and leaves again."""
    busy = tmp_path / "owner-busy"
    probe = [sys.executable, "-c", f"import os, sys; sys.exit(os.path.exists({str(busy)!r}))"]
    async with running_broker(tmp_path) as b, client_of(b) as client:
        app = GriddApp(b.addr, TOKEN)
        lent = {"idle_probe": probe, "probe_every_s": 0.1, "resume_after_s": 0.0}
        async with app.run_test(size=(120, 36)) as pilot, running_worker(tmp_path, b.addr, name="w1", **lent):
            _, workers, _ = tables(app)
            sleeper = await client.submit(SLEEP)
            await eventually(lambda: cell(workers, "w1", "state") == "busy", settle=pilot.pause)
            busy.touch()
            await eventually(lambda: cell(workers, "w1", "state") == "suspended", settle=pilot.pause)
            assert cell(workers, "w1", "jobs") == sleeper  # still its job: suspended, not handed back
            busy.unlink()
            await eventually(lambda: cell(workers, "w1", "state") == "busy", settle=pilot.pause)
            await client.cancel(sleeper)

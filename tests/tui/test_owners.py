"""The dashboard shows each job's owner, and works with a read token: the job detail without its output."""

from __future__ import annotations

from pathlib import Path

from gridd.client import connect
from gridd.tui.app import GriddApp
from gridd.tui.screens.job_detail import JobDetailScreen
from gridd.tui.widgets.job_summary import JobSummary
from gridd.tui.widgets.jobs_table import JobsTable
from gridd.tui.widgets.output_tail import OutputTail
from tests.conftest import client_of, running_broker
from tests.polling import eventually


async def test_a_read_token_sees_owners_and_a_detail_without_output_or_arguments(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as admin:
        alice, _ = await admin.create_token("alice", "submit")
        reader, _ = await admin.create_token("wallboard", "read")
        async with connect(b.addr, alice) as a:
            job = await a.submit(["echo", "secret-argument"], queue="nobody-serves-this")
        app = GriddApp(b.addr, reader)
        async with app.run_test(size=(120, 36)) as pilot:
            jobs = app.dashboard.query_one(JobsTable)
            await eventually(lambda: job in jobs.rows, settle=pilot.pause)
            assert str(jobs.get_cell(job, "owner")) == "alice"
            assert "secret-argument" not in str(jobs.get_cell(job, "command"))
            jobs.move_cursor(row=jobs.get_row_index(job))
            await pilot.pause()
            await pilot.press("enter")
            await eventually(lambda: isinstance(app.screen, JobDetailScreen), settle=pilot.pause)
            summary = app.screen.query_one(JobSummary)
            await eventually(lambda: summary.job is not None, settle=pilot.pause)
            assert summary.job is not None and summary.job.owner == "alice"
            stdout = app.screen.query_one("#stdout", OutputTail)
            assert "(role read) may not read the output of jobs" in stdout.text

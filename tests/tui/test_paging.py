"""With 100,000 jobs the dashboard loads a page at a time, counts them all from the snapshot, pages on
as the cursor nears the bottom, shows new submissions at the top and filters by state and queue."""

from __future__ import annotations

from pathlib import Path

from gridd.protocol.messages import JobSpec
from gridd.tui.app import GriddApp
from gridd.tui.widgets.jobs_table import JobsTable
from gridd.tui.widgets.queue_counts import QueueCounts
from tests.conftest import TOKEN, client_of, running_broker
from tests.polling import eventually
from tests.tui.helpers import state_of

MANY = 100_000


async def test_a_hundred_thousand_jobs_page_in_and_new_ones_show_at_the_top(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        specs = [JobSpec(argv=["true"], queue="bulk") for _ in range(MANY)]
        ids = await client.submit_many(specs)
        app = GriddApp(b.addr, TOKEN)
        async with app.run_test(size=(120, 36)) as pilot:
            jobs, queues = app.dashboard.query_one(JobsTable), app.dashboard.query_one(QueueCounts)
            await eventually(lambda: jobs.row_count > 0 and "bulk" in queues.rows, settle=pilot.pause)
            assert str(queues.get_cell("bulk", "queued")) == str(MANY)
            assert jobs.row_count == jobs.page  # one page, not every row
            assert jobs.selected_job_id() == ids[-1]

            await pilot.press("end")  # the cursor nears the bottom: the next page comes in
            await eventually(lambda: jobs.row_count == 2 * jobs.page, settle=pilot.pause)
            assert ids[-2 * jobs.page] in jobs.rows and ids[-2 * jobs.page - 1] not in jobs.rows

            new = await client.submit(["true"], queue="other")
            await eventually(lambda: new in jobs.rows, settle=pilot.pause)
            assert jobs.get_row_index(new) == 0
            await eventually(lambda: str(queues.get_cell("other", "queued")) == "1", settle=pilot.pause)

            await client.hold(ids[0])  # far below the rows shown: counted, not loaded
            await eventually(lambda: str(queues.get_cell("bulk", "held")) == "1", settle=pilot.pause)
            assert str(queues.get_cell("bulk", "queued")) == str(MANY - 1)
            assert ids[0] not in jobs.rows

            await pilot.press("s", "s", "s", "s")  # state filter: waiting, queued, running, held
            await eventually(lambda: jobs.filter.state == "held" and ids[0] in jobs.rows, settle=pilot.pause)
            assert jobs.row_count == 1
            await client.release(ids[0])  # leaves the filter: its row goes
            await eventually(lambda: ids[0] not in jobs.rows, settle=pilot.pause)
            await client.hold(ids[1])  # enters the filter: its row comes
            await eventually(lambda: state_of(jobs, ids[1]) == "held", settle=pilot.pause)

            await pilot.press("s", "s", "s", "s", "s", "o")  # scheduled, ..., all states; queue filter: the first
            await eventually(lambda: jobs.filter.state is None and jobs.filter.queue == "bulk", settle=pilot.pause)
            await eventually(lambda: jobs.row_count == jobs.page and new not in jobs.rows, settle=pilot.pause)

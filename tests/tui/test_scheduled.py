"""The dashboard and delayed jobs (submit --at/--in), against a real broker whose time is a FakeClock: a
scheduled job is counted in its own column (`sched`), shown and filtered by its state, and moves to
queued when its time comes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from gridd.tui.app import GriddApp
from tests.clock import FakeClock
from tests.conftest import TOKEN, client_of, running_broker
from tests.polling import eventually
from tests.tui.test_dashboard import Table, cell, tables


async def test_a_scheduled_job_is_counted_shown_and_filtered_until_its_time_queues_it(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock, reap_every_s=3600.0) as b, client_of(b) as client:
        queued = await client.submit(["true"])
        start = datetime.fromtimestamp(clock.now_ms() / 1000 + 3600, tz=UTC)
        later = await client.submit(["true"], at=start)
        app = GriddApp(b.addr, TOKEN)
        async with app.run_test(size=(120, 36)) as pilot:
            jobs, _, queues = tables(app)

            async def shown(table: Table, row: str, column: str, value: str | None) -> None:
                await eventually(lambda: cell(table, row, column), holds=lambda seen: seen == value, settle=pilot.pause)

            await shown(queues, "default", "scheduled", "1")
            assert str(queues.columns["scheduled"].label) == "sched"  # type: ignore[index]
            await shown(jobs, later, "state", "scheduled")
            await pilot.press("s", "s", "s", "s", "s")  # state filter: waiting, queued, running, held, scheduled
            await eventually(lambda: jobs.filter.state == "scheduled", settle=pilot.pause)
            await eventually(lambda: later in jobs.rows and queued not in jobs.rows, settle=pilot.pause)

            clock.advance(3600)
            await b.broker.promoter.promote_due()
            await shown(queues, "default", "queued", "2")
            await eventually(lambda: "scheduled" not in queues.columns, settle=pilot.pause)  # none left: no column
            await eventually(lambda: later not in jobs.rows, settle=pilot.pause)  # it left the filter

"""The dashboard survives the broker going away: it says "reconnecting", and when a broker is back on
the same data dir it subscribes again, takes a fresh snapshot and follows events as before. The same
holds when the broker drops it for falling behind a burst of events."""

from __future__ import annotations

import sys
from pathlib import Path

from gridd.protocol.messages import JobSpec
from gridd.tui.app import GriddApp
from gridd.tui.widgets.connection_bar import ConnectionBar
from gridd.tui.widgets.jobs_table import JobsTable
from gridd.tui.widgets.queue_counts import QueueCounts
from gridd.tui.widgets.workers_table import WorkersTable
from tests.conftest import TOKEN, client_of, running_broker, running_worker
from tests.polling import eventually


async def test_a_broker_restart_shows_reconnecting_then_resumes_with_a_fresh_snapshot(tmp_path: Path) -> None:
    where = {"addr": "127.0.0.1:9"}  # nothing listens yet: the app starts out reconnecting
    app = GriddApp(lambda: where["addr"], TOKEN, retry_first_s=0.05, retry_max_s=0.3)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.dashboard
        bar, jobs = screen.query_one(ConnectionBar), screen.query_one(JobsTable)
        queues, workers = screen.query_one(QueueCounts), screen.query_one(WorkersTable)
        await eventually(lambda: bar.status == "reconnecting", settle=pilot.pause)

        async with running_broker(tmp_path) as first, client_of(first) as client:
            port = first.broker.port
            where["addr"] = first.addr  # asked again at each attempt, like the broker's address file
            held = await client.submit(["true"], queue="idle")
            await client.hold(held)
            await eventually(lambda: bar.status == "connected" and held in jobs.rows, settle=pilot.pause)
            assert str(jobs.get_cell(held, "state")) == "held"
        await eventually(lambda: bar.status == "reconnecting", settle=pilot.pause)
        assert "reconnecting" in str(bar.render())

        # The same data dir, on the same port (what `--broker HOST:PORT` users get).
        async with (
            running_broker(tmp_path, listen=f"127.0.0.1:{port}") as second,
            running_worker(tmp_path, second.addr, name="w2"),
            client_of(second) as client,
        ):
            await eventually(lambda: bar.status == "connected" and "w2" in workers.rows, settle=pilot.pause)
            assert str(queues.get_cell("idle", "held")) == "1"  # from the new snapshot
            await client.release(held)  # events flow again, to the rows already shown
            await eventually(lambda: str(jobs.get_cell(held, "state")) == "queued", settle=pilot.pause)
            fresh = await client.submit([sys.executable, "-c", "pass"])
            await eventually(
                lambda: fresh in jobs.rows and str(jobs.get_cell(fresh, "state")) == "succeeded", settle=pilot.pause
            )
            assert jobs.get_row_index(fresh) == 0
            assert str(queues.get_cell("default", "succeeded")) == "1"


async def test_a_burst_bigger_than_the_event_buffer_resubscribes_and_counts_stay_exact(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        app = GriddApp(b.addr, TOKEN, retry_first_s=0.05)
        async with app.run_test(size=(80, 24)) as pilot:
            bar, queues = app.dashboard.query_one(ConnectionBar), app.dashboard.query_one(QueueCounts)
            jobs = app.dashboard.query_one(JobsTable)
            await eventually(lambda: bar.status == "connected", settle=pilot.pause)
            burst = 25_000  # the broker keeps 10,000 events per subscriber, then drops it
            ids = await client.submit_many([JobSpec(argv=["true"], queue="burst") for _ in range(burst)])
            await eventually(
                lambda: "burst" in queues.rows and str(queues.get_cell("burst", "queued")) == str(burst),
                settle=pilot.pause,
            )
            await eventually(
                lambda: bar.status == "connected" and jobs.selected_job_id() == ids[-1], settle=pilot.pause
            )
            assert jobs.row_count == jobs.page

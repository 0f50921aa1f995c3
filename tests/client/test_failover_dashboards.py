"""The dashboards given several brokers (`gridd tui --broker A,B`, `gridd web --broker A,B`) go on through
a move as through a restart: when A goes away they subscribe to B, start again from B's snapshot and
follow its events. Two real brokers on 127.0.0.1, each with its own data dir, so what each shows tells
which broker it follows."""

from __future__ import annotations

from pathlib import Path

import anyio

from gridd.tui.app import GriddApp
from gridd.tui.widgets.connection_bar import ConnectionBar
from gridd.tui.widgets.queue_counts import QueueCounts
from gridd.web.view import BrokerView
from tests.client.test_failover import broker_in_task
from tests.conftest import TOKEN, client_of
from tests.polling import eventually


async def test_the_tui_follows_the_next_broker_when_its_own_goes_away(tmp_path: Path) -> None:
    async with anyio.create_task_group() as tg:
        a, stop_a = await broker_in_task(tg, tmp_path / "a")
        b, stop_b = await broker_in_task(tg, tmp_path / "b")
        async with client_of(a) as on_a:
            await on_a.submit(["true"], queue="on-a")
        async with client_of(b) as on_b:
            await on_b.submit(["true"], queue="on-b")
        app = GriddApp(f"{a.addr},{b.addr}", TOKEN, retry_first_s=0.05, retry_max_s=0.3)
        async with app.run_test(size=(120, 36)) as pilot:
            bar, queues = app.dashboard.query_one(ConnectionBar), app.dashboard.query_one(QueueCounts)
            await eventually(lambda: bar.status == "connected" and "on-a" in queues.rows, settle=pilot.pause)
            assert "on-b" not in queues.rows  # A's grid: the first that answered
            await stop_a()
            await eventually(lambda: bar.status == "connected" and "on-b" in queues.rows, settle=pilot.pause)
            assert "on-a" not in queues.rows  # B's snapshot: nothing of A's lingers
            async with client_of(b) as on_b:
                await on_b.submit(["true"], queue="later-on-b")
            await eventually(lambda: "later-on-b" in queues.rows, settle=pilot.pause)  # and B's events
        await stop_b()


async def test_the_web_view_follows_the_next_broker_and_names_the_one_it_follows(tmp_path: Path) -> None:
    async with anyio.create_task_group() as tg:
        a, stop_a = await broker_in_task(tg, tmp_path / "a")
        b, stop_b = await broker_in_task(tg, tmp_path / "b")
        view = BrokerView(lambda: f"{a.addr},{b.addr}", TOKEN, insecure=False)
        tg.start_soon(view.run)
        await eventually(lambda: view.client is not None and view.address == a.addr)
        assert (await view.state())["broker"] == a.addr
        await stop_a()
        await eventually(lambda: view.client is not None and view.address == b.addr)
        async with client_of(b) as on_b:
            await on_b.submit(["true"], queue="idle")
        await eventually(lambda: view.counts.get("idle", {}).get("queued") == 1)
        state = await view.state()
        assert state["broker"] == b.addr and state["counts"] == {"idle": {"queued": 1}}
        await stop_b()
        tg.cancel_scope.cancel()

"""The dashboard shows commands, queues and output as text: never as markup, never as terminal controls."""

from __future__ import annotations

from pathlib import Path

from gridd.tui.app import GriddApp
from gridd.tui.widgets.jobs_table import JobsTable
from gridd.tui.widgets.queue_counts import QueueCounts
from tests.conftest import TOKEN, client_of, running_broker
from tests.polling import eventually


async def test_markup_and_escape_sequences_in_a_command_are_shown_escaped(tmp_path: Path) -> None:
    """A command holding `[/]` once stopped the dashboard (Rich markup); ESC reached the terminal raw."""
    hostile = ["echo", "[/]", "[bold]x", "\x1b]0;owned\x07\x1b[2J"]
    async with running_broker(tmp_path) as b, client_of(b) as client:
        job = await client.submit(hostile, queue="q\x1b[31m")
        app = GriddApp(b.addr, TOKEN)
        async with app.run_test(size=(160, 36)) as pilot:
            jobs = app.dashboard.query_one(JobsTable)
            queues = app.dashboard.query_one(QueueCounts)
            await eventually(lambda: job in jobs.rows, settle=pilot.pause)
            shown = str(jobs.get_cell(job, "command"))
            assert shown == "echo '[/]' '[bold]x' '\\x1b]0;owned\\x07\\x1b[2J'"
            assert str(jobs.get_cell(job, "queue")) == "q\\x1b[31m"
            await eventually(lambda: "q\x1b[31m" in queues.rows, settle=pilot.pause)
            assert str(queues.get_cell("q\x1b[31m", "queue")) == "q\\x1b[31m"
            assert app.is_running

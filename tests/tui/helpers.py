"""Helpers shared by the dashboard tests: let the app run until a condition holds, read a row's state."""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot

from gridd.tui.widgets.jobs_table import JobsTable
from tests.conftest import eventually


async def until(pilot: Pilot[None], check: Callable[[], bool], within_s: float = 15) -> None:
    """Let the app process its messages until `check()` holds; fail the test after `within_s`."""

    async def settled() -> bool:
        await pilot.pause()
        return check()

    await eventually(settled, within_s=within_s)


def state_of(jobs: JobsTable, job_id: str) -> str | None:
    """The state cell of a job's row, or None while the row is not shown."""
    return str(jobs.get_cell(job_id, "state")) if job_id in jobs.rows else None

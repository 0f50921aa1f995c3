"""Helpers shared by the dashboard tests: read a row's state. (To wait for the app, poll with
tests.polling.eventually and `settle=pilot.pause`, which lets the app process its messages before each look.)"""

from __future__ import annotations

from gridd.tui.widgets.jobs_table import JobsTable


def state_of(jobs: JobsTable, job_id: str) -> str | None:
    """The state cell of a job's row, or None while the row is not shown."""
    return str(jobs.get_cell(job_id, "state")) if job_id in jobs.rows else None

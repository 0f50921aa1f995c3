"""The store's reads of a few jobs among many go through their partial index on SQLite, never through every
job in a state: the dispatcher's next delayed job (read at each pass that drained a lane: with 100,000 jobs
queued for a queue no worker serves, every queued job at each pass) and retention's oldest finished jobs (at
each batch of a purge: every finished job, read and sorted). SQLite's planner, without statistics, chose
the index on the state for both. (The promoter's reads: test_delayed.py.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gridd.broker.schema import migrate
from gridd.broker.store import leasing, retention

pytestmark = pytest.mark.backends("sqlite")  # SQLite's planner; PostgreSQL's plans with its statistics


@pytest.mark.parametrize(
    ("text", "params", "index"),
    [
        (leasing._NEXT_ELIGIBLE_SQL, (0,), "jobs_delayed"),
        (retention._OLDEST_FINISHED_SQL, (0, 500), "jobs_finished"),
    ],
    ids=["next-delayed-job", "oldest-finished-jobs"],
)
def test_a_read_of_a_few_jobs_among_many_reads_its_partial_index(
    tmp_path: Path, text: str, params: tuple[int, ...], index: str
) -> None:
    db = sqlite3.connect(tmp_path / "plan.db")
    migrate(db)
    plan = " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {text}", params))
    db.close()
    assert f"USING INDEX {index} " in plan and "TEMP B-TREE" not in plan, plan

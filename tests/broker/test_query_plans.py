"""The store's reads of a few jobs among many go through the index that finds just those on SQLite, never
through every job in a state or of a group: the dispatcher's next delayed job (read at each pass that
drained a lane: with 100,000 jobs queued for a queue no worker serves, every queued job at each pass),
retention's oldest finished jobs (at each batch of a purge: every finished job, read and sorted), the
dependents of jobs that failed (at each step down a chain being cancelled: every waiting job), and a capped
group's tokens (at each completion in it: every job of the group counted, its throttled ones sorted).
SQLite's planner, without statistics, chose worse for each. (The promoter's reads: test_delayed.py.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gridd.broker.schema import migrate
from gridd.broker.store import flow, leasing, retention

pytestmark = pytest.mark.backends("sqlite")  # SQLite's planner; PostgreSQL's plans with its statistics


@pytest.mark.parametrize(
    ("text", "params", "read"),
    [
        (leasing._NEXT_ELIGIBLE_SQL, (0,), "SEARCH jobs USING INDEX jobs_delayed "),
        (retention._OLDEST_FINISHED_SQL, (0, 500), "SEARCH jobs USING INDEX jobs_finished "),
        (flow._DOOMED_SQL, ("[1]",), "SEARCH d USING PRIMARY KEY (dep_id=?)"),  # then each dependent by its id
        (
            flow._PASS_TOKENS_SQL,
            (1, 1),
            "SEARCH jobs USING INTEGER PRIMARY KEY (rowid=?) | LIST SUBQUERY 1"
            " | SEARCH jobs USING COVERING INDEX jobs_group (group_id=? AND state=? AND throttled=?)",
        ),
        (
            flow._TOKENS_HELD_SQL,
            (1, 1),
            "SCAN CONSTANT ROW | SCALAR SUBQUERY 1"
            " | SEARCH jobs USING COVERING INDEX jobs_group (group_id=? AND state=?) | SCALAR SUBQUERY 2"
            " | SEARCH jobs USING COVERING INDEX jobs_group (group_id=? AND state=? AND throttled=?)",
        ),
    ],
    ids=[
        "next-delayed-job",
        "oldest-finished-jobs",
        "dependents-of-ended-jobs",
        "next-throttled-jobs-of-a-capped-group",
        "tokens-held-in-a-capped-group",
    ],
)
def test_a_read_of_a_few_jobs_among_many_goes_through_the_index_that_finds_them(
    tmp_path: Path, text: str, params: tuple[object, ...], read: str
) -> None:
    db = sqlite3.connect(tmp_path / "plan.db")
    migrate(db)
    plan = " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {text}", params))
    db.close()
    assert plan.startswith(read) and "jobs_state" not in plan and "TEMP B-TREE" not in plan, plan

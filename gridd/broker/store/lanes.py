"""The lanes table: every (queue, lane) that holds a job someone may lease, read once at start (the
broker keeps its own copy current). Part of the store, run inside its transactions.

Rule: a submit adds its lanes in the transaction that inserts its jobs (submit.py); the lanes of queues
with no job left to lease are dropped (Broker.drop_idle_lanes decides which), and a retried job's lane is
restored, so the table holds what may be leased, not every queue ever seen.
"""

from __future__ import annotations

from collections.abc import Sequence

from gridd.broker.matching import Lane
from gridd.broker.store.refs import parse_job_id
from gridd.broker.store.sql import TEXTS, Tx, state
from gridd.protocol.states import JobState


def known_lanes(db: Tx) -> list[Lane]:
    return [(r[0], r[1]) for r in db.execute("SELECT queue, lane FROM lanes")]


def drop_lanes(db: Tx, queues: Sequence[str]) -> None:
    """Forget the lanes of queues that have no job left to lease. A lane that holds a queued job all the same
    stays: another broker on the same database may have just submitted it (this one decided from its own
    counts), and a broker that starts later must find its lane."""
    db.execute(_DROP_SQL, (db.texts(queues),))


# The NOT EXISTS reads the leasing index only (jobs_ready: queue, lane, WHERE word for word).
_DROP_SQL = (
    f"DELETE FROM lanes WHERE queue IN ({TEXTS}) AND NOT EXISTS (SELECT 1 FROM jobs"  # noqa: S608
    " WHERE jobs.queue = lanes.queue AND jobs.lane = lanes.lane"
    f" AND state = {state(JobState.QUEUED)} AND throttled = 0)"
)


def restore_lanes(db: Tx, job_ids: Sequence[str]) -> list[Lane]:
    """The (queue, lane) of these jobs, in the lanes table again."""
    lanes = [
        (r[0], r[1])
        for r in db.execute(
            "SELECT DISTINCT queue, lane FROM jobs WHERE id IN (SELECT value FROM json_each(?))",
            (db.ids(parse_job_id(j) for j in job_ids),),
        )
    ]
    db.executemany("INSERT INTO lanes (queue, lane) VALUES (?, ?) ON CONFLICT DO NOTHING", lanes)
    return lanes

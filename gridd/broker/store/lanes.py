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
from gridd.broker.store.sql import TEXTS, Tx


def known_lanes(db: Tx) -> list[Lane]:
    return [(r[0], r[1]) for r in db.execute("SELECT queue, lane FROM lanes")]


def drop_lanes(db: Tx, queues: Sequence[str]) -> None:
    """Forget the lanes of queues that have no job left to lease."""
    db.execute(f"DELETE FROM lanes WHERE queue IN ({TEXTS})", (db.texts(queues),))  # noqa: S608


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

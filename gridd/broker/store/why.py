"""The store's read for `gridd why`: one job with what keeps it waiting that only the database knows (its
dependencies' states, its retry delay, its group's --max-running) and what the jobs running now ask for.
Part of the store, run on its database thread."""

from __future__ import annotations

from collections.abc import Sequence

import gridd.broker.store.reads as reads
import gridd.broker.store.sql as sql
from gridd.broker.store.interface import JobFacts
from gridd.broker.store.refs import parse_job_id
from gridd.broker.store.sql import Tx
from gridd.protocol.messages import DependencyView
from gridd.protocol.states import JobState

RUNNING_NAMED = 5  # a group at --max-running names at most this many of its running jobs
_GROUP_RUNNING_SQL = f"SELECT id FROM jobs WHERE group_id = ? AND state = {sql.state(JobState.RUNNING)} ORDER BY id"  # noqa: S608


def job_facts(conn: Tx, job_id: str, running: Sequence[str]) -> JobFacts:
    """UnknownJob if there is no such job. `running`: the ids of the jobs the connected workers run, whose
    sizes are read so that a worker's free cpus and memory can be told."""
    job, attempts = reads.get_job(conn, job_id)
    key = parse_job_id(job_id)
    not_before, throttled, group_id = sql.rows(
        conn, "SELECT not_before_ms, throttled, group_id FROM jobs WHERE id = ?", (key,)
    )[0]
    deps = sql.rows(
        conn,
        "SELECT d.dep_id, COALESCE(j.state, 'purged') FROM deps d LEFT JOIN jobs j ON j.id = d.dep_id"
        " WHERE d.job_id = ? ORDER BY d.dep_id",
        (key,),
    )
    max_running, group_running, count = None, [], 0
    if group_id is not None:
        max_running = sql.rows(conn, "SELECT max_running FROM groups WHERE id = ?", (group_id,))[0][0]
        if max_running is not None:
            ids = sql.rows(conn, _GROUP_RUNNING_SQL, (group_id,))
            count, group_running = len(ids), [str(r[0]) for r in ids[:RUNNING_NAMED]]
    sizes = sql.rows(
        conn,
        "SELECT id, cpus, memory_mb FROM jobs WHERE id IN (SELECT value FROM json_each(?))",
        (conn.ids(int(j) for j in running if j.isdigit()),),
    )
    return JobFacts(
        job=job,
        attempts=attempts,
        not_before_ms=int(not_before),
        throttled=bool(throttled),
        dependencies=[DependencyView(id=str(d), state=s) for d, s in deps],
        max_running=max_running,
        group_running=group_running,
        group_running_count=count,
        sizes={str(i): (int(c), int(m)) for i, c, m in sizes},
    )

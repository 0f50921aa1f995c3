"""Delayed jobs (submit --at/--in): a job's start time kept at submit, and the jobs whose time came queued
in batches. Part of the store.

Rules: a job with a start time still ahead is `scheduled` (the transition table says so); `start_ms`
holds that time, and only the jobs_scheduled index ((state, start_ms) WHERE state = 'scheduled') is read
to find the due ones and the next one, so waiting jobs cost nothing until their time. Promotion is the table's
SCHEDULED -> QUEUED edge (waiting instead while dependencies remain), made by one UPDATE fenced by the
state it leaves, whose RETURNING says which jobs it moved: two brokers on one store never promote a job
twice, nor report one the other promoted. A release of a scheduled job ("run it now") moves its
start time to then: a later hold and release must not put it back to wait for the old time.
"""

from __future__ import annotations

from collections.abc import Sequence

import gridd.broker.store.flow as flow
from gridd.broker import transitions as tr
from gridd.broker.store.sql import Tx, rows, state
from gridd.broker.transitions import Move, Transition
from gridd.protocol.messages import JobSpec
from gridd.protocol.states import JobState

_SCHEDULED = state(JobState.SCHEDULED)
# Where the table's DUE move leads: queued, or waiting while dependencies remain.
_READY, _WAITING = tr.step(tr.SCHEDULED, Move.DUE), tr.step(tr.SCHEDULED, Move.DUE, pending_deps=1)
_DUE_SQL = f"SELECT id FROM jobs WHERE state = {_SCHEDULED} AND start_ms <= ? ORDER BY start_ms, id LIMIT ?"  # noqa: S608
# One statement, fenced by the state it leaves: a job another broker promoted meanwhile is not returned.
_PROMOTE_SQL = (
    f"UPDATE jobs SET state = CASE WHEN pending_deps > 0 THEN {state(_WAITING)} ELSE {state(_READY)} END,"  # noqa: S608
    f" throttled = {flow.THROTTLED} WHERE id IN ({_DUE_SQL}) AND state = {_SCHEDULED}"
    " RETURNING id, state, queue, attempts, start_ms"
)
_NEXT_SQL = f"SELECT MIN(start_ms) FROM jobs WHERE state = {_SCHEDULED}"  # noqa: S608


def ahead(spec: JobSpec, now_ms: int) -> bool:
    """Whether the job's start time has not come yet (a time now or past runs it at once)."""
    return spec.start_at_ms is not None and spec.start_at_ms > now_ms


def keep_start_times(db: Tx, ids: Sequence[int], specs: Sequence[JobSpec]) -> None:
    """At submit: the start time of each new job that has one (ids and specs in the same order)."""
    timed = [(s.start_at_ms, job_id) for job_id, s in zip(ids, specs, strict=True) if s.start_at_ms is not None]
    if timed:
        db.executemany("UPDATE jobs SET start_ms = ? WHERE id = ?", timed)


def started_early(db: Tx, ids: Sequence[int], now_ms: int) -> None:
    """Scheduled jobs released before their time: their start time is now."""
    if ids:
        db.executemany("UPDATE jobs SET start_ms = ? WHERE id = ?", [(now_ms, job_id) for job_id in ids])


def promote_due(db: Tx, now_ms: int, max_jobs: int) -> tuple[list[Transition], int | None]:
    """Queue (or set waiting, while dependencies remain) up to `max_jobs` scheduled jobs whose start time
    has come, earliest first; returns them, and the start time of the next job still scheduled (None: none)."""
    moved = sorted(rows(db, _PROMOTE_SQL, (now_ms, max_jobs)), key=lambda r: (r[4], r[0]))  # earliest first
    flow.rebalance(db, [int(r[0]) for r in moved])  # a capped group's tokens go to its first ones
    changed = [
        Transition(str(r[0]), JobState(r[1]), str(r[2]), int(r[3]), reason="its start time came", previous=tr.SCHEDULED)
        for r in moved
    ]
    found = rows(db, _NEXT_SQL)
    return changed, (int(found[0][0]) if found and found[0][0] is not None else None)

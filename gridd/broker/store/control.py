"""Control actions: cancel, hold, release and retry of the jobs a person names (a group names all its
jobs). Part of the store.

Rules: an action applies to a job only where the transition table allows it, and each job named is
answered, applied or refused with why, never skipped. A job named twice (or through two groups) is acted
on once. Cancelling a running job revokes its lease (returned, for its worker to be told to stop). A
released or retried job waits for its dependencies that have not succeeded, and cannot be retried while
one of them has failed or been cancelled; it is scheduled again while its start time (submit --at/--in)
is ahead, unless it was the scheduled job itself that was released (start_times.py). A released or
retried job of a capped group (--max-running) queues throttled, and waits for a token. The jobs acted
on, and a retried job's unfinished dependencies, are locked as they are read: an action never decides on a
job another broker is changing at that moment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gridd.broker.store.flow as flow
import gridd.broker.store.gangs as gangs
import gridd.broker.store.start_times as start_times
from gridd.broker import transitions as tr
from gridd.broker.matching import Lane
from gridd.broker.store.interface import Revoked
from gridd.broker.store.lanes import restore_lanes
from gridd.broker.store.refs import expand_refs
from gridd.broker.store.sql import BY_ID_FOR_UPDATE, Tx, rows, state
from gridd.broker.transitions import Move, Transition
from gridd.protocol.errors import ErrorCode, InvalidRequest, UnknownJob
from gridd.protocol.messages import LeaseRef, Outcome
from gridd.protocol.states import JobState

_THROTTLED = flow.THROTTLED
# Parameters of each: (new state, finished_ms, id, old state).
_CONTROL_SQL = {
    Move.CANCEL: "UPDATE jobs SET state = ?, finished_ms = ?, deadline_ms = NULL, reason = 'cancelled by user'"
    " WHERE id = ? AND state = ?",
    Move.HOLD: "UPDATE jobs SET state = ?, finished_ms = ? WHERE id = ? AND state = ?",
    Move.RELEASE: f"UPDATE jobs SET state = ?, finished_ms = ?, throttled = {_THROTTLED} WHERE id = ? AND state = ?",  # noqa: S608
    Move.RETRY: "UPDATE jobs SET state = ?, finished_ms = ?, attempts = 0, exit_code = NULL, reason = NULL,"  # noqa: S608
    f" worker = NULL, not_before_ms = 0, throttled = {_THROTTLED}, strikes = NULL, poison = 0"
    " WHERE id = ? AND state = ?",
}
# The jobs named, locked until the action commits: another broker completing, expiring or acting on one
# of them at once waits, then this one reads what it did (never both deciding on the same row).
_NAMED_SQL = (
    "SELECT id, state, lease, worker, queue, attempts, pending_deps, start_ms FROM jobs"  # noqa: S608
    f" WHERE id IN (SELECT value FROM json_each(?)){BY_ID_FOR_UPDATE}"
)
# A retried job's dependencies that have not succeeded, locked too: one that another broker is ending
# right now is read as it ends (succeeded: not waited for; failed: the retry refused).
_UNMET_SQL = (
    "SELECT id, state FROM deps d JOIN jobs x ON x.id = d.dep_id WHERE d.job_id = ?"  # noqa: S608
    f" AND x.state != {state(JobState.SUCCEEDED)}{BY_ID_FOR_UPDATE}"
)


def control_jobs(
    db: Tx, action: str, refs: Sequence[str], now_ms: int
) -> tuple[list[Outcome], list[Transition], list[Revoked], list[Lane]]:
    if action not in tr.ACTIONS:
        raise InvalidRequest(f"unknown action {action!r}; expected one of {', '.join(tr.ACTIONS)}")
    move = Move(action)
    named = _first_of_each(expand_refs(db, refs))
    found = rows(db, _NAMED_SQL, (db.ids(key for _, key, _ in named if key is not None),))
    current = {r[0]: r for r in found}
    outcomes: list[Outcome] = []
    changed: list[Transition] = []
    revoked: list[Revoked] = []
    updates: list[tuple[Any, ...]] = []
    for job_id, key, group in named:
        row = current.get(key) if key is not None else None
        if row is None:
            outcomes.append(
                Outcome(job_id=job_id, code=ErrorCode.UNKNOWN_JOB, message=f"no job or group has id {job_id!r}")
            )
            continue
        was = row[1]
        refusal = tr.refusal(action, job_id, was) if not tr.allows(was, move) else None
        unmet = rows(db, _UNMET_SQL, (row[0],)) if refusal is None and move == Move.RETRY else []
        if unmet:
            refusal = _retry_refusal(row[0], unmet)
        if refusal is not None:
            outcomes.append(
                Outcome(job_id=job_id, code=ErrorCode.ILLEGAL_TRANSITION, state=was, message=refusal, group=group)
            )
            continue
        if was == JobState.RUNNING and row[3]:
            revoked.append(Revoked(row[3], LeaseRef(job_id=job_id, lease=row[2])))
        # Only a job going back to the queue may have to wait for its dependencies instead.
        pending = row[6] if move == Move.RELEASE else len(unmet)
        new = tr.step(was, move, pending_deps=pending, start_ahead=(row[7] or 0) > now_ms)
        updates.append((new, now_ms if new == JobState.CANCELLED else None, row[0], was, pending))
        outcomes.append(Outcome(job_id=job_id, code=0, state=new, group=group))
        changed.append(Transition(job_id, new, row[4], row[5], row[3], None, f"{action} by user", was))
    if updates:
        revoked += gangs.revoke_members(db, [u[2] for u in updates if u[3] == JobState.RUNNING])
        db.executemany(_CONTROL_SQL[move], [u[:4] for u in updates])
        if move == Move.RETRY:
            db.executemany("UPDATE jobs SET pending_deps = ? WHERE id = ?", [(u[4], u[2]) for u in updates])
        if move == Move.RELEASE:  # a scheduled job released runs now: its start time is now
            start_times.started_early(db, [u[2] for u in updates if u[3] == JobState.SCHEDULED], now_ms)
        changed += flow.settle(db, changed, now_ms)
    # A retried job's queue may have had its lanes dropped since (housekeeping): known again, in the same
    # transaction, so that the broker counts the jobs and learns their lanes at the same moment.
    restored = restore_lanes(db, [t.job_id for t in changed]) if move == Move.RETRY and changed else []
    return outcomes, changed, revoked, restored


def expand(db: Tx, refs: Sequence[str]) -> list[str]:
    named = expand_refs(db, refs)
    for ref, key, _ in named:
        if key is None:
            raise UnknownJob(f"no job or group has id {ref!r}")
    return [job_id for job_id, _, _ in named]


def _first_of_each(named: list[tuple[str, int | None, str | None]]) -> list[tuple[str, int | None, str | None]]:
    """Each job once, however many times (or through however many groups) it was named."""
    seen: set[int] = set()
    out = []
    for entry in named:
        if entry[1] is None or entry[1] not in seen:
            out.append(entry)
            if entry[1] is not None:
                seen.add(entry[1])
    return out


def _retry_refusal(key: int, unmet: list[Any]) -> str | None:
    """A job cannot be retried while one of its dependencies has failed or been cancelled."""
    doomed = next((r for r in unmet if r[1] in flow.DOOMING), None)
    if doomed is None:
        return None
    return f"job {key} depends on job {doomed[0]}, which {tr.ended_as(doomed[1])}; retry that one first"

"""Leases that end without a result: expired (their worker went silent), given back (a draining worker, a
grant lost with the connection), or settled when a worker re-attaches. Part of the store.

Rules: an expired attempt is spent, as a failed one is (the job's retry policy decides, as for a failed
command: retry_policy.py, its cause `lost`), and recorded with where and when it ran and nothing it
measured; a returned one is not spent (RETURN: queued again at once, its attempt count back). A
re-attaching worker instance names every lease it holds: those are renewed, the ones it names that are no
longer its own are lost to it, and those it does not name expire if it is a new process (it may have run
them) or go back if it is the same one (the grant never reached it). Leases of another instance of the
same name are left alone. Every broker's reaper runs at once on a shared PostgreSQL: each skips the leases
another holds locked, so a lease expires once; re-attach and hand-back lock the jobs they read.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

import gridd.broker.store.attempts as attempts
import gridd.broker.store.flow as flow
import gridd.broker.store.gangs as gangs
import gridd.broker.store.retries as retry_store
from gridd.broker import retry_policy as policy
from gridd.broker import transitions as tr
from gridd.broker.store.refs import parse_job_id
from gridd.broker.store.sql import BY_ID_FOR_UPDATE, SKIP_LOCKED, Tx, rows, state
from gridd.broker.transitions import Move, Transition
from gridd.protocol.messages import LeaseRef
from gridd.protocol.states import JobState

_RUNNING = JobState.RUNNING  # the state a lease is held in (the table's source of REQUEUE, FAIL, RETURN)
_EXPIRED = policy.LEASE_EXPIRED  # the outcome of an attempt whose lease ended it (a `lost` failure)
_LEASES = "SELECT id, lease, attempts, max_attempts, queue, worker, started_ms FROM jobs"
_EXPIRE_SQL = (
    # The job's exit status is its last attempt's, and an expired attempt has none.
    "UPDATE jobs SET state = ?, finished_ms = ?, reason = ?, worker = NULL, deadline_ms = NULL,"  # noqa: S608
    " exit_code = NULL, not_before_ms = ?, strikes = COALESCE(?, strikes), poison = ?"
    f" WHERE id = ? AND lease = ? AND state = {state(_RUNNING)}"
)
_HELD_BY = f"state = {state(_RUNNING)} AND worker = ? AND instance = ?"  # a worker instance's leases
_RENEW_SQL = f"UPDATE jobs SET deadline_ms = ? WHERE id = ? AND lease = ? AND state = {state(_RUNNING)}"  # noqa: S608
_LEFT, _BACK = tr.edge(Move.RETURN)
_RETURN_SQL = (
    f"UPDATE jobs SET state = {state(_BACK)}, attempts = attempts - 1, worker = NULL, deadline_ms = NULL"  # noqa: S608
    f" WHERE id = ? AND lease = ? AND state = {state(_LEFT)}"
)


def expire_leases(db: Tx, now_ms: int, lending: Container[str] = ()) -> list[Transition]:
    # Every broker's reaper runs this: a lease another broker is expiring, renewing or completing right
    # now is skipped (locked), and left to that broker or to the next pass.
    found = rows(db, f"{_LEASES} WHERE state = {state(_RUNNING)} AND deadline_ms < ?{SKIP_LOCKED}", (now_ms,))
    found += gangs.lapsed(db, now_ms)  # a gang member's lease (rank 1 or more): its gang's attempt is lost
    return _expire(db, found, now_ms, "lease expired", lending)


def _expire(db: Tx, leases: Sequence[Any], now_ms: int, why: str, lending: Container[str] = ()) -> list[Transition]:
    """`leases`: rows of _LEASES. `lending`: the workers known to lend a desktop (their expired attempts
    count as lent)."""
    changed: list[Transition] = []
    updates: list[tuple[Any, ...]] = []
    ended: list[tuple[attempts.Attempt, attempts.Measured]] = []
    lost = policy.failure_of(None, _EXPIRED)
    failed = retry_store.policies(db, [r[0] for r in leases]) if leases else {}
    for job_id, lease, attempt, max_attempts, queue, worker, started_ms in leases:
        retries, struck = failed[job_id]
        own = f"{why} on worker {worker} (attempt {attempt} of {max_attempts})"
        # The base delay does not matter: a lost lease waits only for the job's own --retry-delay.
        verdict = policy.after_failure(retries, lost, worker, attempt, max_attempts, struck, 0, own)
        new, reason = tr.step(_RUNNING, verdict.move), verdict.reason
        again = new == JobState.QUEUED
        not_before = now_ms + verdict.delay_ms if again and verdict.delay_ms else 0  # 0: at once
        strikes, poison = retry_store.strikes_text(verdict.strikes), int(verdict.poison)
        updates.append((new, None if again else now_ms, reason, not_before, strikes, poison, job_id, lease))
        # What is known of an attempt whose worker went silent: where and when; nothing it measured.
        lends = None if worker is None else int(worker in lending)
        ran = (job_id, lease, attempt, worker, started_ms, now_ms, None, _EXPIRED, None, None)
        ended.append((ran, (None, None, None, None, None, lends)))
        changed.append(Transition(str(job_id), new, queue, attempt, worker, None, reason, _RUNNING))
    if updates:
        db.executemany(_EXPIRE_SQL, updates)
        gangs.forget_members(db, [u[6] for u in updates])  # a gang's attempt ended: its members are no more
        attempts.record(db, ended)
        changed += flow.settle(db, changed, now_ms)
    return changed


def attach_worker(
    db: Tx,
    worker: str,
    running: Sequence[LeaseRef],
    deadline_ms: int,
    now_ms: int,
    restarted: bool = True,
    instance: str = "",
    lends: bool = False,
) -> tuple[list[LeaseRef], list[Transition]]:
    # Only the leases granted to this instance: those of another instance of the name (the name's
    # owner, away, while another peer uses it) are neither attached nor failed here; they stay
    # until their own worker re-attaches them or their deadline passes.
    found = rows(db, f"{_LEASES} WHERE {_HELD_BY}{BY_ID_FOR_UPDATE}", (worker, instance))
    held = {(str(r[0]), r[1]) for r in found}
    named = {(ref.job_id, ref.lease) for ref in running}
    claimed, members_gone = gangs.attach(db, worker, instance, running, deadline_ms)  # gang members, rank 1+
    kept = held | claimed
    lost = [ref for ref in running if (ref.job_id, ref.lease) not in kept]
    db.executemany(_RENEW_SQL, [(deadline_ms, int(job_id), lease) for job_id, lease in held & named])
    orphans = [r for r in found if (str(r[0]), r[1]) not in named]
    if restarted:  # a new worker process: the old one may have run them, so the attempt counts
        return lost, _expire(db, orphans + members_gone, now_ms, "worker restarted", {worker} if lends else ())
    # The same process, reconnecting: it names every lease it ever received, so these grants never
    # reached it (lost with the connection) and the jobs never started there.
    back = [LeaseRef(job_id=str(r[0]), lease=r[1]) for r in orphans]
    gone = _expire(db, members_gone, now_ms, "gang member's grant lost with the connection")
    return lost, _return(db, worker, back, "lease grant lost with the connection", instance) + gone


def return_leases(db: Tx, worker: str, leases: Sequence[LeaseRef], instance: str = "") -> list[Transition]:
    gangs.let_go(db, worker, instance, leases)  # a gang member of rank 1 or more: its gang's attempt is lost
    return _return(db, worker, leases, "handed back by a draining worker", instance)


def _return(db: Tx, worker: str, leases: Sequence[LeaseRef], why: str, instance: str) -> list[Transition]:
    found = rows(
        db,
        "SELECT id, lease, queue, attempts FROM jobs"  # noqa: S608
        f" WHERE id IN (SELECT value FROM json_each(?)) AND {_HELD_BY}{BY_ID_FOR_UPDATE}",
        (db.ids(parse_job_id(r.job_id) for r in leases), worker, instance),
    )
    named = {(int(r.job_id), r.lease) for r in leases}
    back = [r for r in found if (r[0], r[1]) in named]
    db.executemany(_RETURN_SQL, [(r[0], r[1]) for r in back])
    return [Transition(str(r[0]), _BACK, r[2], r[3] - 1, worker, None, why, _LEFT) for r in back]

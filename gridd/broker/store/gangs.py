"""Gang jobs (submit --gang N): N members leased together to N distinct workers, and the attempt they make
as one. Part of the store (both backends).

Rules:
- A gang is one job row. It is leased only here, whole: one conditional UPDATE of the table's QUEUED ->
  RUNNING edge gives the row rank 0's lease, worker and instance, and in the same transaction
  gang_members receives every member (rank 0 too) with its own fencing token; ordinary leasing skips
  gangs (leasing.py). A member is current while its job is running under the lease it was granted with
  (`attempt_lease`), so the rows of an earlier attempt stop counting at once (they are removed as it ends).
- Rank 0's lease lives on in the job row (renewed, expired, re-attached and returned as any job's is);
  the other members' leases are renewed, expired and re-attached here, by their rows' deadlines. When
  rank 0 ends first, the job row's deadline is cleared, so that the others alone keep the gang alive.
- The attempt ends once: when its last member exits 0 (the job succeeds, its output the members' in rank
  order), or at the first member that fails or whose lease lapses, recorded on that member's worker (the
  job's retry policy decides, as for any failed attempt: the gang runs again as one). Either way it ends
  through the ordinary completion or expiry of the job row's lease, so it is recorded, counted and
  retried like any attempt. The members still running then hold leases that are no longer current: their
  next renewal tells their workers to stop them (a cancel revokes them at once).
- Several brokers on one PostgreSQL: every decision about a gang's members is taken with its job row
  locked (the row completion, expiry and control lock too), so two members' results, a result and a lapse,
  or a result and a cancel arriving through two brokers at once are decided one after the other, and the
  attempt ends once. A broker leasing or reaping skips a gang whose row another broker holds, never waits.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import msgspec

import gridd.broker.store.completion as completion
from gridd.broker import transitions as tr
from gridd.broker.observe import Observer
from gridd.broker.store.gang_rows import GangGrant, QueuedGang, member_spec
from gridd.broker.store.interface import Revoked
from gridd.broker.store.refs import parse_job_id
from gridd.broker.store.sql import SKIP_LOCKED, Fragment, Tx, rows, state
from gridd.broker.transitions import Move, Transition
from gridd.protocol.errors import ErrorCode
from gridd.protocol.limits import MAX_OUTPUT_BYTES
from gridd.protocol.messages import JobResult, JobSpec, LeasedJob, LeaseRef, Outcome

_spec_decoder = msgspec.msgpack.Decoder(JobSpec)

_QUEUED, _RUNNING = tr.edge(Move.LEASE)
_QUEUED_SQL = (
    "SELECT id, queue, lane, gang, cpus, memory_mb, submitted_ms, start_ms, not_before_ms FROM jobs"  # noqa: S608
    f" WHERE state = {state(_QUEUED)} AND gang > 0 AND throttled = 0 ORDER BY priority DESC, id LIMIT ?"
)
# The gang's row, locked until its lease commits: one another broker is leasing, or ending an attempt of,
# right now is skipped, never waited for (as leasing.py skips ordinary jobs).
_FREE_SQL = f"SELECT id FROM jobs WHERE id = ?{SKIP_LOCKED}"  # noqa: S608
_LEASE_SQL = (
    f"UPDATE jobs SET state = {state(_RUNNING)}, attempts = attempts + 1, lease = ?, worker = ?, instance = ?,"  # noqa: S608
    " deadline_ms = ?, started_ms = ?, not_before_ms = 0"
    f" WHERE id = ? AND state = {state(_QUEUED)} AND throttled = 0 AND gang = ? AND lease != ?"
    " AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = ? AND a.lease = ?)"
    " RETURNING attempts, spec, submitted_ms"
)
_MEMBER_SQL = (
    "INSERT INTO gang_members (job_id, rank, attempt_lease, lease, worker, instance, host, deadline_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# A member of the current attempt that has not ended: its job runs under the lease it was granted with.
_CURRENT = f"g.ended = 0 AND j.state = {state(_RUNNING)} AND j.lease = g.attempt_lease"
# The rows expiry.py's _expire takes (its _LEASES), the job's lease and the member's worker.
_AS_LEASE = "j.id, j.lease, j.attempts, j.max_attempts, j.queue, g.worker, j.started_ms"
# Members read to decide on them: their gangs' job rows locked, by id (jobs.id, as every use case locks).
_JOBS_FOR_UPDATE = Fragment(" /* gangs by id, for update */", " ORDER BY j.id FOR UPDATE OF j")
# The reaper's: gangs whose row another broker holds (ending their attempt, or reaping them) are skipped.
_JOBS_SKIP_LOCKED = Fragment(" /* gangs, for update skip locked */", " FOR UPDATE OF j SKIP LOCKED")
_MEMBERS_SQL = (
    f"SELECT g.job_id, g.lease, g.rank, {_AS_LEASE} FROM gang_members g JOIN jobs j ON j.id = g.job_id"  # noqa: S608
    f" WHERE g.worker = ? AND g.instance = ? AND {_CURRENT}"
)
_MEMBERS_OF_SQL = f"{_MEMBERS_SQL}{_JOBS_FOR_UPDATE}"
_MEMBERS_AMONG_SQL = f"{_MEMBERS_SQL} AND g.job_id IN (SELECT value FROM json_each(?)){_JOBS_FOR_UPDATE}"  # noqa: S608


def keep_gang_sizes(db: Tx, ids: Sequence[int], specs: Sequence[JobSpec]) -> None:
    """At submit: the gangs' sizes, in the column ordinary leasing skips them by."""
    sized = [(s.gang, job_id) for job_id, s in zip(ids, specs, strict=True) if s.gang]
    if sized:
        db.executemany("UPDATE jobs SET gang = ? WHERE id = ?", sized)


def queued_gangs(db: Tx, limit: int) -> list[QueuedGang]:
    """The queued gangs not held back by their group, the best first (priority, then age), retry
    delays included (QueuedGang.not_before_ms says until when)."""
    return [
        QueuedGang(str(r[0]), (r[1], r[2]), r[3], r[4], r[5], max(r[6], r[7] or 0, r[8]), r[8])
        for r in rows(db, _QUEUED_SQL, (limit,))
    ]


def lease_gangs(
    db: Tx, grants: Sequence[GangGrant], now_ms: int, ttl_ms: int
) -> tuple[list[list[LeasedJob]], list[int]]:
    """Each grant's members in rank order, leased together (none if the gang was no longer queued, or no
    longer of that size), and how long each first attempt among them waited since its submit (ms)."""
    deadline = now_ms + ttl_ms
    granted: list[list[LeasedJob]] = []
    waits: list[int] = []
    for grant in grants:
        job_id, seats = parse_job_id(grant.job_id), grant.seats
        if not rows(db, _FREE_SQL, (job_id,)):  # another broker is at it: it is that one's to lease
            granted.append([])
            continue
        tokens = _tokens(len(seats))
        first = seats[0]
        found = rows(
            db,
            _LEASE_SQL,
            (
                tokens[0],
                first.worker,
                first.instance,
                deadline,
                now_ms,
                job_id,
                len(seats),
                tokens[0],
                job_id,
                tokens[0],
            ),
        )
        if not found:
            granted.append([])
            continue
        attempt, spec, submitted_ms = found[0][0], _spec_decoder.decode(found[0][1]), found[0][2]
        forget_members(db, [job_id])  # an earlier attempt's, if it ended in a way that left them
        db.executemany(
            _MEMBER_SQL,
            [
                (job_id, rank, tokens[0], tokens[rank], s.worker, s.instance, s.host, deadline)
                for rank, s in enumerate(seats)
            ],
        )
        granted.append(
            [
                LeasedJob(grant.job_id, tokens[rank], attempt, deadline, member_spec(spec, rank, seats))
                for rank in range(len(seats))
            ]
        )
        if attempt == 1:
            waits.append(now_ms - submitted_ms)
    return granted, waits


def observed(observer: Observer, out: tuple[list[list[LeasedJob]], list[int]]) -> list[list[LeasedJob]]:
    """The grants, once committed, with the first attempts' waits told to the metrics."""
    granted, waits_ms = out
    if waits_ms:
        observer.leased(waits_ms)
    return granted


def _tokens(n: int) -> list[int]:
    """n distinct fencing tokens: 62 random bits each (an int64 on the wire and in SQLite), never 0."""
    tokens: list[int] = []
    while len(tokens) < n:
        token = secrets.randbits(62) or 1
        if token not in tokens:
            tokens.append(token)
    return tokens


# ---- members' leases: renewed, lapsed, re-attached, revoked ----------------------------------------------------


def renew_members(db: Tx, worker: str, instance: str, leases: Sequence[LeaseRef], deadline_ms: int) -> list[LeaseRef]:
    """Extend the current member leases among `leases` that this worker instance holds; returns them."""
    held = {(str(r[0]), r[1]) for r in _members_of(db, worker, instance, [parse_job_id(r.job_id) for r in leases])}
    renewed = [ref for ref in leases if (ref.job_id, ref.lease) in held]
    db.executemany(
        "UPDATE gang_members SET deadline_ms = ? WHERE job_id = ? AND lease = ?",
        [(deadline_ms, int(ref.job_id), ref.lease) for ref in renewed],
    )
    return renewed


def _members_of(db: Tx, worker: str, instance: str, among: Sequence[int] | None = None) -> list[Any]:
    """(job id, member lease, rank, then _AS_LEASE) of the current members a worker instance holds (of the
    jobs `among`, if given), their jobs locked: one another broker is ending at once is read as it ends."""
    if among is None:
        return rows(db, _MEMBERS_OF_SQL, (worker, instance))
    return rows(db, _MEMBERS_AMONG_SQL, (worker, instance, db.ids(among)))


def lapsed(db: Tx, now_ms: int) -> list[Any]:
    """Running gangs a member of which (rank 1 or more) let its lease pass its deadline, one row each as
    expiry.py expires them (the job's lease, the lapsed member's worker). Those whose job row's own
    deadline passed too are left to the ordinary expiry, which finds them."""
    found = rows(
        db,
        # CROSS JOIN: SQLite reads the members by their deadline first, never every running job.
        f"SELECT {_AS_LEASE} FROM gang_members g CROSS JOIN jobs j"  # noqa: S608
        f" WHERE j.id = g.job_id AND g.deadline_ms < ? AND g.rank > 0 AND {_CURRENT}"
        f" AND (j.deadline_ms IS NULL OR j.deadline_ms >= ?) ORDER BY j.id, g.rank{_JOBS_SKIP_LOCKED}",
        (now_ms, now_ms),
    )
    return list({r[0]: r for r in reversed(found)}.values())  # one per gang: its lowest lapsed rank


def attach(
    db: Tx, worker: str, instance: str, running: Sequence[LeaseRef], deadline_ms: int
) -> tuple[set[tuple[str, int]], list[Any]]:
    """A (re)connecting worker instance names the jobs it runs: its members of rank 1 or more that it
    names are renewed (returned as (job id, lease)), and those it does not name are returned as rows to
    expire (expiry.py: the gang's attempt is lost). Rank 0 is the job row's, attached as any job is."""
    named = {(ref.job_id, ref.lease) for ref in running}
    claimed: set[tuple[str, int]] = set()
    orphans: list[Any] = []
    for member in _members_of(db, worker, instance):
        key = (str(member[0]), member[1])
        if key in named:
            claimed.add(key)
        elif member[2] > 0:
            orphans.append(tuple(member[3:]))
    db.executemany(
        "UPDATE gang_members SET deadline_ms = ? WHERE job_id = ? AND lease = ?",
        [(deadline_ms, int(job_id), lease) for job_id, lease in claimed],
    )
    return claimed, orphans


def let_go(db: Tx, worker: str, instance: str, leases: Sequence[LeaseRef]) -> None:
    """A draining worker hands back members of rank 1 or more: their leases lapse now, and the next expiry
    pass ends their gangs' attempts (a member that ran cannot be put back alone)."""
    db.executemany(
        "UPDATE gang_members SET deadline_ms = 0 WHERE job_id = ? AND lease = ? AND worker = ? AND instance = ?"
        " AND rank > 0 AND ended = 0",
        [(parse_job_id(ref.job_id), ref.lease, worker, instance) for ref in leases],
    )


def extend_members(db: Tx, deadline_ms: int) -> None:
    """After a restart: every member lease that has not ended may be re-attached until `deadline_ms`."""
    db.execute(
        "UPDATE gang_members SET deadline_ms = ? WHERE ended = 0 AND deadline_ms < ?", (deadline_ms, deadline_ms)
    )


def revoke_members(db: Tx, job_ids: Sequence[int]) -> list[Revoked]:
    """The current members of rank 1 or more of these running gangs (rank 0's is the job row's lease),
    for their workers to stop: the gangs are being cancelled (control.py, which locked their rows)."""
    revoked: list[Revoked] = []
    for job_id in job_ids:
        found = rows(
            db,
            f"SELECT g.worker, g.lease FROM gang_members g JOIN jobs j ON j.id = g.job_id"  # noqa: S608
            f" WHERE g.job_id = ? AND g.rank > 0 AND {_CURRENT}",
            (job_id,),
        )
        revoked += [Revoked(r[0], LeaseRef(job_id=str(job_id), lease=r[1])) for r in found]
    forget_members(db, job_ids)
    return revoked


def forget_members(db: Tx, job_ids: Sequence[int]) -> None:
    """The attempts of these jobs ended (or they were never gangs): their members' rows go."""
    db.executemany("DELETE FROM gang_members WHERE job_id = ?", [(job_id,) for job_id in job_ids])


# ---- members' results: the attempt ends once -------------------------------------------------------------------


def complete_jobs(
    db: Tx,
    worker: str,
    results: Sequence[JobResult],
    now_ms: int,
    retry_base_ms: int,
    instance: str = "",
    lent: bool | None = None,
) -> tuple[list[Outcome], list[Transition]]:
    """Store.complete_jobs with gangs: a member's result is kept with its member; the one that ends its
    gang's attempt (the last success, or the first failure) completes the job row's lease in its name
    (completion.py). Results of ordinary jobs go straight there."""
    ids = [parse_job_id(r.job_id) for r in results]
    current = completion.current_rows(db, ids)
    gangs = {job_id for job_id, row in current.items() if row[completion.GANG] > 0}
    plain = [r for r, job_id in zip(results, ids, strict=True) if job_id not in gangs]
    outcomes, changed = completion.complete_jobs(db, worker, plain, now_ms, retry_base_ms, instance, lent, current)
    for result in (r for r, job_id in zip(results, ids, strict=True) if job_id in gangs):
        outcome, ending = _member_ended(db, worker, instance, result)
        if ending is None:
            outcomes.append(outcome)
            continue
        owner, owner_instance, final = ending
        ended, moved = completion.complete_jobs(
            db, owner, [final], now_ms, retry_base_ms, owner_instance, lent if owner == worker else None
        )
        outcomes += ended
        changed += moved
        forget_members(db, [int(result.job_id)])
    return outcomes, changed


def _member_ended(
    db: Tx, worker: str, instance: str, result: JobResult
) -> tuple[Outcome, tuple[str, str, JobResult] | None]:
    """Keep one member's result (its job row locked by complete_jobs). Returns its Outcome, and, if it ends
    the attempt, the worker (instance) to complete the job row's lease in the name of (rank 0's for a
    success, the failed member's for a failure) and the result to complete it with."""
    job_id = int(result.job_id)
    found = rows(
        db,
        "SELECT g.rank, j.lease, j.worker, j.instance FROM gang_members g JOIN jobs j ON j.id = g.job_id"  # noqa: S608
        f" WHERE g.job_id = ? AND g.lease = ? AND g.worker = ? AND g.instance = ? AND {_CURRENT}",
        (job_id, result.lease, worker, instance),
    )
    if not found:
        message = f"lease {result.lease} of gang job {result.job_id} is no longer current; the result was not recorded"
        return Outcome(job_id=result.job_id, code=ErrorCode.STALE_LEASE, message=message), None
    rank, lease, owner, owner_instance = found[0]
    db.execute(
        "UPDATE gang_members SET ended = 1, exit_code = ?, stdout = ?, stderr = ?, stdout_truncated = ?,"
        " stderr_truncated = ? WHERE job_id = ? AND rank = ?",
        (
            result.exit_code,
            result.stdout,
            result.stderr,
            int(result.stdout_truncated),
            int(result.stderr_truncated),
            job_id,
            rank,
        ),
    )
    failed = result.exit_code != 0
    left = rows(db, "SELECT COUNT(*) FROM gang_members WHERE job_id = ? AND ended = 0", (job_id,))[0][0]
    if not failed and left:
        if rank == 0:  # the job row's lease is renewed no more: the other members keep the gang alive
            db.execute("UPDATE jobs SET deadline_ms = NULL WHERE id = ? AND lease = ?", (job_id, lease))
        return Outcome(job_id=result.job_id, code=0, state=_RUNNING), None
    outputs = rows(
        db,
        "SELECT stdout, stderr, stdout_truncated, stderr_truncated FROM gang_members"
        " WHERE job_id = ? AND ended = 1 ORDER BY rank",
        (job_id,),
    )
    stdout, stderr = b"".join(o[0] or b"" for o in outputs), b"".join(o[1] or b"" for o in outputs)
    how = f"exited with status {result.exit_code}" if result.exit_code is not None else f"ended: {result.outcome}"
    said = f"gang member {rank} on worker {worker} {how}" + (f": {result.message}" if result.message else "")
    if failed:  # the attempt failed there: recorded, counted and struck (retry_policy) on that member's worker
        db.execute(
            "UPDATE jobs SET worker = ?, instance = ? WHERE id = ? AND lease = ?", (worker, instance, job_id, lease)
        )
        owner, owner_instance = worker, instance
    final = msgspec.structs.replace(
        result,
        lease=lease,
        stdout=stdout[:MAX_OUTPUT_BYTES],
        stderr=stderr[:MAX_OUTPUT_BYTES],
        stdout_truncated=any(o[2] for o in outputs) or len(stdout) > MAX_OUTPUT_BYTES,
        stderr_truncated=any(o[3] for o in outputs) or len(stderr) > MAX_OUTPUT_BYTES,
        message=said if failed else result.message,
    )
    return Outcome(job_id=result.job_id, code=0), (owner, owner_instance, final)

"""Leasing: queued jobs granted to a worker under a fencing token, and the leases kept alive. Part of the
store (both backends).

Rules: a lease is granted by one conditional UPDATE of the table's QUEUED -> RUNNING edge, so a job is
never leased twice; its token is random (a counter could be guessed) and differs from every earlier
lease of the job. Only the worker instance a lease was granted to may renew it. None of this is fsynced:
a grant or renewal lost with the power is done again after the restart (the job runs again).
Several brokers on one PostgreSQL lease side by side: each takes its candidates FOR UPDATE SKIP LOCKED,
so the jobs another broker is granting right now are skipped, never waited for nor granted twice; a
renewal locks the jobs it reads, so a lease another broker is ending at once is read as it ends.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import msgspec

import gridd.broker.store.gangs as gangs
from gridd.broker import transitions as tr
from gridd.broker.matching import UNLIMITED, Budget, DrainedLanes, Lane
from gridd.broker.observe import Observer
from gridd.broker.store.records import Ask
from gridd.broker.store.refs import parse_job_id
from gridd.broker.store.sql import BY_ID_FOR_UPDATE, SKIP_LOCKED, RowUpdate, Tx, indexed_by, rows, state
from gridd.broker.transitions import Move
from gridd.protocol.messages import JobSpec, LeasedJob, LeaseRef

_spec_decoder = msgspec.msgpack.Decoder(JobSpec)

# The specs one lease reply may carry, in all (a reply's frame may hold 16 MiB).
LEASE_REPLY_BYTES = 8 * 1024 * 1024

_QUEUED, _RUNNING = tr.edge(Move.LEASE)
_CANDIDATES_SQL = (
    f"SELECT id, priority, cpus, memory_mb, length(spec) FROM jobs WHERE state = {state(_QUEUED)} AND throttled = 0"  # noqa: S608
    " AND queue = ? AND lane = ? AND not_before_ms <= ? AND cpus <= ? AND memory_mb <= ? AND gang = 0"
    f" ORDER BY priority DESC, id LIMIT ?{SKIP_LOCKED}"
)
# The grants, each by its job's primary key, from the state it leaves (RowUpdate says why not a constant).
_LEASE = RowUpdate(
    f"UPDATE jobs SET state = {state(_RUNNING)}, attempts = attempts + 1, lease = :lease,"  # noqa: S608
    " worker = :worker, instance = :instance, deadline_ms = :deadline_ms, started_ms = :started_ms,"
    " not_before_ms = 0 WHERE id = :id AND state = :was AND throttled = 0 AND lease != :lease"
    " AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = :id AND a.lease = :lease)"
    " RETURNING id, lease, attempts, spec, submitted_ms",
    id="bigint",
    was="text",
    lease="bigint",
    worker="text",
    instance="text",
    deadline_ms="bigint",
    started_ms="bigint",
)
# From jobs_delayed, whose WHERE the literal `not_before_ms > 0` matches: every queued job read instead took
# 9.4 ms a call with 100,000 of them queued (3 µs through the index), at each dispatch pass that drained a lane.
_NEXT_ELIGIBLE_SQL = (
    f"SELECT MIN(not_before_ms) FROM jobs{indexed_by('jobs_delayed')}"  # noqa: S608
    f" WHERE state = {state(_QUEUED)} AND not_before_ms > 0 AND not_before_ms > ?"
)
# Locked until the renewal commits: a lease another broker is ending at once is read as it ends.
_CURRENT_SQL = (
    "SELECT id, state, lease, worker, instance FROM jobs"  # noqa: S608
    f" WHERE id IN (SELECT value FROM json_each(?)){BY_ID_FOR_UPDATE}"
)
_RENEW_SQL = f"UPDATE jobs SET deadline_ms = ? WHERE id = ? AND lease = ? AND state = {state(_RUNNING)}"  # noqa: S608


def lease_jobs(
    db: Tx,
    worker: str,
    lanes: Sequence[Lane],
    max_jobs: int,
    now_ms: int,
    ttl_ms: int,
    budget: Budget | None = None,
    instance: str = "",
) -> tuple[list[LeasedJob], list[int]]:
    """The leases, and how long each first attempt among them waited since its submit (ms)."""
    budget = budget or Budget()
    job_cpus = UNLIMITED if budget.job_cpus is None else budget.job_cpus
    job_memory = UNLIMITED if budget.job_memory_mb is None else budget.job_memory_mb
    candidates: list[tuple[int, int, int, int, int]] = []
    for queue, lane in dict.fromkeys(lanes):
        # Jobs too big for this request are skipped inside jobs_ready, which covers cpus and
        # memory_mb: a skipped job costs an index entry, never a table row. Head-of-line cost: the
        # rows skipped are the lane's queued jobs that rank ahead of the first one that fits. Within
        # a dispatch pass a lane is read again only under a larger per-job budget (scheduler.py), so
        # once per lane per distinct worker size; jobs too big only for a worker's free budget go to
        # the next worker with room, and only jobs bigger than every connected worker stay at the
        # head, which `gridd show` reports (they are the user's to resize or to give a worker).
        found = rows(db, _CANDIDATES_SQL, (queue, lane, now_ms, job_cpus, job_memory, max_jobs))
        candidates.extend((r[0], r[1], r[2], r[3], r[4]) for r in found)
    if not candidates:
        return [], []
    candidates.sort(key=lambda c: (-c[1], c[0]))
    fits = budget.take((c[2], c[3]) for c in candidates)
    chosen = _within_reply([c for c, fit in zip(candidates, fits, strict=True) if fit][:max_jobs])
    deadline = now_ms + ttl_ms
    # Each lease's fencing token is drawn at random (a counter could be guessed), and must differ
    # from every earlier lease of its job (attempts' key is (job_id, lease)): a job whose draw does
    # not (odds 2**-62 per earlier lease) is left queued, for the next pass to draw again.
    grants = [(job_id, _QUEUED, _new_lease(), worker, instance, deadline, now_ms) for job_id in chosen]
    by_id = {r[0]: r for r in db.update_rows(_LEASE, grants)}
    granted = [by_id[g[0]] for g in grants if g[0] in by_id]  # in the order chosen
    leased = [
        LeasedJob(job_id=str(r[0]), lease=r[1], attempt=r[2], deadline_ms=deadline, spec=_spec_decoder.decode(r[3]))
        for r in granted
    ]
    return leased, [now_ms - r[4] for r in granted if r[2] == 1]  # first attempts: their wait since submit


def lease_for(db: Tx, asks: Sequence[Ask], now_ms: int, ttl_ms: int) -> tuple[list[list[LeasedJob]], list[int]]:
    """lease_jobs for each ask, in order, in one transaction: one round trip serves every worker waiting.
    A lane that gave all it had to one ask is not read again for a later ask whose budget it covers."""
    drained = DrainedLanes()
    granted: list[list[LeasedJob]] = []
    waits_ms: list[int] = []
    for ask in asks:
        lanes = drained.open(ask.lanes, ask.budget)
        leased, waits = lease_jobs(db, ask.worker, lanes, ask.max_jobs, now_ms, ttl_ms, ask.budget, ask.instance)
        drained.note(lanes, ask.budget, ask.max_jobs, [j.spec for j in leased])
        granted.append(leased)
        waits_ms += waits
    return granted, waits_ms


def observed(observer: Observer, out: tuple[list[list[LeasedJob]], list[int]]) -> list[list[LeasedJob]]:
    """The leases, once committed, with the first attempts' waits told to the metrics."""
    granted, waits_ms = out
    if waits_ms:
        observer.leased(waits_ms)
    return granted


def _within_reply(candidates: list[tuple[int, int, int, int, int]]) -> list[int]:
    """The ids of the first candidates whose specs fit one lease reply (LEASE_REPLY_BYTES; always at least
    one): jobs of up to 4 MiB each (stdin) must not make a reply too large for the worker to take, which
    would lose the grants with the connection and lease them again, for ever."""
    kept: list[int] = []
    total = 0
    for job_id, *_, size in candidates:
        total += size
        if kept and total > LEASE_REPLY_BYTES:
            break
        kept.append(job_id)
    return kept


def _new_lease() -> int:
    """A fencing token: 62 random bits (an int64 on the wire and in both databases), never 0 (never leased)."""
    return secrets.randbits(62) or 1


def next_eligible_ms(db: Tx, now_ms: int) -> int | None:
    found = rows(db, _NEXT_ELIGIBLE_SQL, (now_ms,))
    return found[0][0] if found and found[0][0] is not None else None


def renew_leases(
    db: Tx, worker: str, leases: Sequence[LeaseRef], deadline_ms: int, instance: str = ""
) -> list[LeaseRef]:
    """Extends the leases still held; returns the others."""
    current = _current_leases(db, [parse_job_id(ref.job_id) for ref in leases])
    valid = [ref for ref in leases if current.get(int(ref.job_id)) == (_RUNNING, ref.lease, worker, instance)]
    db.executemany(_RENEW_SQL, [(deadline_ms, int(ref.job_id), ref.lease) for ref in valid])
    others = [ref for ref in leases if ref not in valid]  # a gang's members but rank 0 hold their leases there
    members = gangs.renew_members(db, worker, instance, others, deadline_ms) if others else []
    return [ref for ref in others if ref not in members]


def _current_leases(db: Tx, ids: Sequence[int]) -> dict[int, tuple[str, int, str | None, str]]:
    """Job id -> (state, lease, worker, instance) of its current (or last) lease."""
    found = rows(db, _CURRENT_SQL, (db.ids(ids),))
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in found}


def extend_running_leases(db: Tx, deadline_ms: int) -> int:
    cur = db.execute(
        "UPDATE jobs SET deadline_ms = CASE WHEN deadline_ms > ? THEN deadline_ms ELSE ? END"  # noqa: S608
        f" WHERE state = {state(_RUNNING)}",
        (deadline_ms, deadline_ms),
    )
    gangs.extend_members(db, deadline_ms)
    return cur.rowcount

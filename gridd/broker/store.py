"""The broker's store: the only code that speaks SQL.

Rules: one public method per use case, and each is one transaction under the store's lock, so two tasks'
statements never interleave on the single connection. Methods take and return batches: the cost of the
store is its round trips to the database thread, not its rows (DESIGN.md), so one call serves many jobs.
Transitions are conditional UPDATEs (`WHERE id = ? AND lease = ? AND state = ?`) decided by transitions.py.
Nothing is acknowledged by a caller before the method that wrote it has returned, i.e. committed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import msgspec

from gridd.broker import transitions as tr
from gridd.broker.schema import migrate
from gridd.protocol.errors import StorageFailed, UnknownJob
from gridd.protocol.messages import (
    AttemptView,
    JobResult,
    JobSpec,
    JobView,
    LeasedJob,
    LeaseRef,
    Outcome,
)

_spec_encoder = msgspec.msgpack.Encoder()
_spec_decoder = msgspec.msgpack.Decoder(JobSpec)

_VIEW_COLUMNS = (
    "j.id, j.state, j.queue, j.priority, j.spec, j.attempts, j.max_attempts, j.exit_code, j.worker, "
    "j.submitted_ms, j.started_ms, j.finished_ms, j.reason, "
    "(SELECT length(data) FROM outputs WHERE job_id = j.id AND stream = 'stdout'), "
    "(SELECT length(data) FROM outputs WHERE job_id = j.id AND stream = 'stderr')"
)


@dataclass(frozen=True, slots=True)
class Transition:
    """A job that changed state in a store call, for events and waiters."""

    job_id: str
    state: str
    queue: str
    attempt: int
    worker: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    previous: str | None = None  # the state it left; None for a new job


@dataclass(frozen=True, slots=True)
class Revoked:
    """A running job's lease that a control action invalidated; its worker must stop it."""

    worker: str
    lease: LeaseRef


# Parameters of each: (new state, finished_ms, id, old state).
_CONTROL_SQL = {
    "cancel": "UPDATE jobs SET state = ?, finished_ms = ?, deadline_ms = NULL, reason = 'cancelled by user'"
    " WHERE id = ? AND state = ?",
    "hold": "UPDATE jobs SET state = ?, finished_ms = ? WHERE id = ? AND state = ?",
    "release": "UPDATE jobs SET state = ?, finished_ms = ? WHERE id = ? AND state = ?",
    "retry": "UPDATE jobs SET state = ?, finished_ms = ?, attempts = 0, exit_code = NULL, reason = NULL,"
    " worker = NULL, not_before_ms = 0 WHERE id = ? AND state = ?",
}


def parse_job_id(job_id: str) -> int:
    """A job id as the database keys it; anything else is an unknown job."""
    if not job_id.isdigit() or len(job_id) > 18:
        raise UnknownJob(f"no job has id {job_id!r}")
    return int(job_id)


def _ids_json(ids: Iterable[int]) -> str:
    return json.dumps(list(ids))


class Store:
    """Jobs, leases, attempts and outputs in one SQLite file (WAL)."""

    def __init__(self, db: aiosqlite.Connection, next_id: int) -> None:
        self._db = db
        self._lock = anyio.Lock()
        self._next_id = next_id

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            try:
                yield self._db
                await self._db.commit()
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    await self._db.rollback()
                if isinstance(exc, sqlite3.Error):
                    raise StorageFailed(f"the broker could not commit: {exc}") from exc
                raise

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        async with self._db.execute(sql, params) as cur:
            return list(await cur.fetchall())

    # ---- submit ----------------------------------------------------------------------------------------

    async def submit_jobs(self, specs: Sequence[JobSpec], now_ms: int) -> list[Transition]:
        """Insert jobs, queued, in one transaction; returns them in order with their new ids."""
        async with self._transaction() as db:
            first = self._next_id
            rows = [
                (first + i, tr.QUEUED, s.queue, s.priority, s.max_attempts, _spec_encoder.encode(s), now_ms)
                for i, s in enumerate(specs)
            ]
            await db.executemany(
                "INSERT INTO jobs (id, state, queue, priority, max_attempts, spec, submitted_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._next_id = first + len(rows)
        return [Transition(str(r[0]), tr.QUEUED, r[2], 0) for r in rows]

    # ---- leasing ---------------------------------------------------------------------------------------

    async def lease_jobs(
        self, worker: str, queues: Sequence[str], max_jobs: int, now_ms: int, ttl_ms: int
    ) -> list[LeasedJob]:
        """Lease up to `max_jobs` of the best eligible jobs (priority, then age) of `queues` to `worker`."""
        async with self._transaction():
            candidates: list[tuple[int, int]] = []
            for queue in queues:
                rows = await self._rows(
                    "SELECT id, priority FROM jobs WHERE state = 'queued' AND queue = ?"
                    " AND not_before_ms <= ? ORDER BY priority DESC, id LIMIT ?",
                    (queue, now_ms, max_jobs),
                )
                candidates.extend((r[0], r[1]) for r in rows)
            if not candidates:
                return []
            candidates.sort(key=lambda c: (-c[1], c[0]))
            chosen = [c[0] for c in candidates[:max_jobs]]
            deadline = now_ms + ttl_ms
            rows = await self._rows(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease = lease + 1,"
                " worker = ?, deadline_ms = ?, started_ms = ?, not_before_ms = 0"
                " WHERE id IN (SELECT value FROM json_each(?)) AND state = 'queued'"
                " RETURNING id, lease, attempts, spec",
                (worker, deadline, now_ms, _ids_json(chosen)),
            )
        leased = [
            LeasedJob(job_id=str(r[0]), lease=r[1], attempt=r[2], deadline_ms=deadline, spec=_spec_decoder.decode(r[3]))
            for r in rows
        ]
        leased.sort(key=lambda j: chosen.index(int(j.job_id)))
        return leased

    async def next_eligible_ms(self, now_ms: int) -> int | None:
        """When the next delayed job becomes eligible, if any is waiting for its retry delay."""
        rows = await self._rows(
            "SELECT MIN(not_before_ms) FROM jobs WHERE state = 'queued' AND not_before_ms > ?", (now_ms,)
        )
        return rows[0][0] if rows and rows[0][0] is not None else None

    async def renew_leases(self, worker: str, leases: Sequence[LeaseRef], deadline_ms: int) -> list[LeaseRef]:
        """Extend the deadlines of the leases `worker` still holds; returns those it no longer holds."""
        async with self._transaction() as db:
            current = await self._current_leases([parse_job_id(ref.job_id) for ref in leases])
            valid = [ref for ref in leases if current.get(int(ref.job_id)) == (tr.RUNNING, ref.lease, worker)]
            await db.executemany(
                "UPDATE jobs SET deadline_ms = ? WHERE id = ? AND lease = ? AND state = 'running'",
                [(deadline_ms, int(ref.job_id), ref.lease) for ref in valid],
            )
        return [ref for ref in leases if ref not in valid]

    async def _current_leases(self, ids: Sequence[int]) -> dict[int, tuple[str, int, str | None]]:
        rows = await self._rows(
            "SELECT id, state, lease, worker FROM jobs WHERE id IN (SELECT value FROM json_each(?))",
            (_ids_json(ids),),
        )
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    # ---- completion, expiry, hand-back -------------------------------------------------------------------

    async def complete_jobs(
        self, worker: str, results: Sequence[JobResult], now_ms: int, retry_base_ms: int
    ) -> tuple[list[Outcome], list[Transition]]:
        """Record each attempt's outcome exactly once: a result whose lease is not current is refused."""
        async with self._transaction() as db:
            ids = [parse_job_id(r.job_id) for r in results]
            rows = await self._rows(
                "SELECT id, state, lease, attempts, max_attempts, queue, started_ms FROM jobs"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (_ids_json(ids),),
            )
            current = {r[0]: r for r in rows}
            outcomes: list[Outcome] = []
            changed: list[Transition] = []
            updates: list[tuple[Any, ...]] = []
            history: list[tuple[Any, ...]] = []
            outputs: list[tuple[Any, ...]] = []
            for job_id, result in zip(ids, results, strict=True):
                row = current.get(job_id)
                if row is None or row[1] != tr.RUNNING or row[2] != result.lease:
                    state = row[1] if row else "unknown"
                    outcomes.append(
                        Outcome(
                            job_id=result.job_id,
                            code=4000,
                            state=state,
                            message=(
                                f"lease {result.lease} of job {result.job_id} is no longer current"
                                f" (state={state}, lease={row[2] if row else None}); the result was not recorded"
                            ),
                        )
                    )
                    continue
                attempts, max_attempts, queue = row[3], row[4], row[5]
                state = tr.after_attempt(result.exit_code, attempts, max_attempts)
                finished = now_ms if state != tr.QUEUED else None
                not_before = now_ms + tr.retry_delay_ms(attempts, retry_base_ms) if state == tr.QUEUED else 0
                reason = result.message or None
                updates.append(
                    (
                        state,
                        result.exit_code,
                        finished,
                        not_before,
                        reason,
                        worker if state != tr.QUEUED else None,
                        job_id,
                        result.lease,
                    )
                )
                history.append(
                    (job_id, result.lease, attempts, worker, row[6], now_ms, result.exit_code, result.outcome)
                )
                outputs.append((job_id, "stdout", result.stdout, result.stdout_truncated))
                outputs.append((job_id, "stderr", result.stderr, result.stderr_truncated))
                outcomes.append(Outcome(job_id=result.job_id, code=0, state=state))
                changed.append(
                    Transition(result.job_id, state, queue, attempts, worker, result.exit_code, reason, tr.RUNNING)
                )
            if updates:
                await db.executemany(
                    "UPDATE jobs SET state = ?, exit_code = ?, finished_ms = ?, not_before_ms = ?, reason = ?,"
                    " worker = ?, deadline_ms = NULL WHERE id = ? AND lease = ? AND state = 'running'",
                    updates,
                )
                await db.executemany("INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?)", history)
                await db.executemany("INSERT OR REPLACE INTO outputs VALUES (?, ?, ?, ?)", outputs)
        return outcomes, changed

    async def expire_leases(self, now_ms: int) -> list[Transition]:
        """Reap leases past their deadline: queued again (attempt + 1 next time) or failed after the last."""
        async with self._transaction():
            rows = await self._rows(
                "SELECT id, lease, attempts, max_attempts, queue, worker, started_ms FROM jobs"
                " WHERE state = 'running' AND deadline_ms < ?",
                (now_ms,),
            )
            return await self._expire(rows, now_ms, "lease expired")

    async def _expire(self, rows: Sequence[sqlite3.Row], now_ms: int, why: str) -> list[Transition]:
        changed: list[Transition] = []
        updates: list[tuple[Any, ...]] = []
        history: list[tuple[Any, ...]] = []
        for job_id, lease, attempts, max_attempts, queue, worker, started_ms in rows:
            state = tr.QUEUED if attempts < max_attempts else tr.FAILED
            reason = f"{why} on worker {worker} (attempt {attempts} of {max_attempts})"
            updates.append((state, now_ms if state == tr.FAILED else None, reason, job_id, lease))
            history.append((job_id, lease, attempts, worker, started_ms, now_ms, None, "lease_expired"))
            changed.append(Transition(str(job_id), state, queue, attempts, worker, None, reason, tr.RUNNING))
        if updates:
            await self._db.executemany(
                "UPDATE jobs SET state = ?, finished_ms = ?, reason = ?, worker = NULL, deadline_ms = NULL"
                " WHERE id = ? AND lease = ? AND state = 'running'",
                updates,
            )
            await self._db.executemany("INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?)", history)
        return changed

    async def attach_worker(
        self, worker: str, running: Sequence[LeaseRef], deadline_ms: int, now_ms: int
    ) -> tuple[list[LeaseRef], list[Transition]]:
        """A (re)connecting worker names the jobs it still runs: those leases are renewed, the ones it
        does not hold any more are returned as lost, and jobs leased to it that it does not name (the
        grant was lost with the connection) expire at once."""
        async with self._transaction():
            rows = await self._rows(
                "SELECT id, lease, attempts, max_attempts, queue, worker, started_ms FROM jobs"
                " WHERE state = 'running' AND worker = ?",
                (worker,),
            )
            held = {(str(r[0]), r[1]) for r in rows}
            named = {(ref.job_id, ref.lease) for ref in running}
            lost = [ref for ref in running if (ref.job_id, ref.lease) not in held]
            await self._db.executemany(
                "UPDATE jobs SET deadline_ms = ? WHERE id = ? AND lease = ? AND state = 'running'",
                [(deadline_ms, int(job_id), lease) for job_id, lease in held & named],
            )
            orphans = [r for r in rows if (str(r[0]), r[1]) not in named]
            changed = await self._expire(orphans, now_ms, "lease lost with the connection")
        return lost, changed

    async def return_leases(self, worker: str, leases: Sequence[LeaseRef]) -> list[Transition]:
        """A draining worker hands jobs back: queued again at once, the attempt not spent."""
        async with self._transaction() as db:
            rows = await self._rows(
                "SELECT id, lease, queue, attempts FROM jobs WHERE id IN (SELECT value FROM json_each(?))"
                " AND state = 'running' AND worker = ?",
                (_ids_json(parse_job_id(r.job_id) for r in leases), worker),
            )
            named = {(int(r.job_id), r.lease) for r in leases}
            back = [r for r in rows if (r[0], r[1]) in named]
            await db.executemany(
                "UPDATE jobs SET state = 'queued', attempts = attempts - 1, worker = NULL, deadline_ms = NULL"
                " WHERE id = ? AND lease = ? AND state = 'running'",
                [(r[0], r[1]) for r in back],
            )
        return [
            Transition(
                str(r[0]), tr.QUEUED, r[2], r[3] - 1, worker, None, "handed back by a draining worker", tr.RUNNING
            )
            for r in back
        ]

    async def extend_running_leases(self, deadline_ms: int) -> int:
        """After a restart: give every running lease until `deadline_ms` for its worker to re-attach."""
        async with self._transaction() as db:
            cur = await db.execute(
                "UPDATE jobs SET deadline_ms = MAX(deadline_ms, ?) WHERE state = 'running'", (deadline_ms,)
            )
            return cur.rowcount

    # ---- control actions -----------------------------------------------------------------------------------

    async def control_jobs(
        self, action: str, job_ids: Sequence[str], now_ms: int
    ) -> tuple[list[Outcome], list[Transition], list[Revoked]]:
        """Apply cancel/hold/release/retry to each job where the transition is legal; refuse the rest."""
        allowed, target = tr.ACTIONS[action]
        async with self._transaction() as db:
            parsed: dict[str, int | None] = {}
            for job_id in job_ids:
                try:
                    parsed[job_id] = parse_job_id(job_id)
                except UnknownJob:
                    parsed[job_id] = None
            rows = await self._rows(
                "SELECT id, state, lease, worker, queue, attempts FROM jobs"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (_ids_json(i for i in parsed.values() if i is not None),),
            )
            current = {r[0]: r for r in rows}
            outcomes: list[Outcome] = []
            changed: list[Transition] = []
            revoked: list[Revoked] = []
            updates: list[tuple[Any, ...]] = []
            for job_id, key in parsed.items():
                row = current.get(key) if key is not None else None
                if row is None:
                    outcomes.append(Outcome(job_id=job_id, code=3000, message=f"no job has id {job_id!r}"))
                    continue
                state = row[1]
                if state not in allowed:
                    outcomes.append(
                        Outcome(job_id=job_id, code=3001, state=state, message=tr.refusal(action, job_id, state))
                    )
                    continue
                if state == tr.RUNNING and row[3]:
                    revoked.append(Revoked(row[3], LeaseRef(job_id=job_id, lease=row[2])))
                updates.append((target, now_ms if target == tr.CANCELLED else None, row[0], state))
                outcomes.append(Outcome(job_id=job_id, code=0, state=target))
                changed.append(Transition(job_id, target, row[4], row[5], row[3], None, f"{action} by user", state))
            if updates:
                await db.executemany(_CONTROL_SQL[action], updates)
        return outcomes, changed, revoked

    # ---- reads -----------------------------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> tuple[JobView, list[AttemptView]]:
        """One job and its finished attempts; UnknownJob if there is none."""
        key = parse_job_id(job_id)
        rows = await self._rows(f"SELECT {_VIEW_COLUMNS} FROM jobs j WHERE j.id = ?", (key,))  # noqa: S608
        if not rows:
            raise UnknownJob(f"no job has id {job_id!r}")
        history = await self._rows(
            "SELECT attempt, worker, lease, started_ms, ended_ms, exit_code, outcome FROM attempts"
            " WHERE job_id = ? ORDER BY lease",
            (key,),
        )
        attempts = [
            AttemptView(
                attempt=h[0], worker=h[1], lease=h[2], started_ms=h[3], ended_ms=h[4], exit_code=h[5], outcome=h[6]
            )
            for h in history
        ]
        return _view(rows[0]), attempts

    async def get_jobs(self, job_ids: Sequence[str]) -> list[JobView]:
        """The named jobs, in the order named; UnknownJob for the first that does not exist."""
        keys = [parse_job_id(j) for j in job_ids]
        rows = await self._rows(
            f"SELECT {_VIEW_COLUMNS} FROM jobs j WHERE j.id IN (SELECT value FROM json_each(?))",  # noqa: S608
            (_ids_json(keys),),
        )
        found = {r[0]: _view(r) for r in rows}
        for job_id, key in zip(job_ids, keys, strict=True):
            if key not in found:
                raise UnknownJob(f"no job has id {job_id!r}")
        return [found[k] for k in keys]

    async def list_jobs(
        self, state: str | None, queue: str | None, limit: int, before: str | None = None
    ) -> list[JobView]:
        """The most recently submitted jobs first, optionally of one state and queue, older than the job
        `before` (for paging); limit 0 = all."""
        cursor = parse_job_id(before) if before else 2**62
        rows = await self._rows(
            f"SELECT {_VIEW_COLUMNS} FROM jobs j WHERE (?1 IS NULL OR j.state = ?1)"  # noqa: S608
            " AND (?2 IS NULL OR j.queue = ?2) AND j.id < ?4 ORDER BY j.id DESC LIMIT ?3",
            (state, queue, limit if limit > 0 else -1, cursor),
        )
        return [_view(r) for r in rows]

    async def read_output(self, job_id: str, stream: str) -> tuple[bytes, bool]:
        """A job's captured stdout or stderr (empty before it has run) and whether it was truncated."""
        key = parse_job_id(job_id)
        rows = await self._rows(
            "SELECT j.id, o.data, o.truncated FROM jobs j LEFT JOIN outputs o ON o.job_id = j.id AND o.stream = ?"
            " WHERE j.id = ?",
            (stream, key),
        )
        if not rows:
            raise UnknownJob(f"no job has id {job_id!r}")
        return (bytes(rows[0][1] or b""), bool(rows[0][2]))

    async def count_by_queue(self) -> dict[str, dict[str, int]]:
        """queue -> state -> number of jobs (read once at start; the broker keeps it current)."""
        counts: dict[str, dict[str, int]] = {}
        for queue, state, n in await self._rows("SELECT queue, state, COUNT(*) FROM jobs GROUP BY queue, state"):
            counts.setdefault(queue, {})[state] = n
        return counts


def _view(r: sqlite3.Row) -> JobView:
    spec = _spec_decoder.decode(r[4])
    return JobView(
        id=str(r[0]),
        state=r[1],
        queue=r[2],
        priority=r[3],
        argv=spec.argv,
        attempts=r[5],
        max_attempts=r[6],
        exit_code=r[7],
        worker=r[8],
        submitted_ms=r[9],
        started_ms=r[10],
        finished_ms=r[11],
        timeout_s=spec.timeout_s,
        reason=r[12],
        stdout_bytes=r[13] or 0,
        stderr_bytes=r[14] or 0,
    )


@asynccontextmanager
async def open_store(path: Path) -> AsyncIterator[Store]:
    """Open (creating and migrating if needed) the database at `path`, in WAL mode, fsync on commit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = await aiosqlite.connect(path)
    except sqlite3.Error as exc:
        raise StorageFailed(f"cannot open the database {path}: {exc}") from exc
    try:
        await db.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit survives a power cut, not only a killed broker; group commit pays for it.
        await db.execute("PRAGMA synchronous = FULL")
        await db.execute("PRAGMA busy_timeout = 5000")
        await migrate(db)
        rows = await db.execute_fetchall("SELECT COALESCE(MAX(id), 0) FROM jobs")
        yield Store(db, next_id=int(next(iter(rows))[0]) + 1)
    finally:
        with anyio.CancelScope(shield=True):
            await db.close()

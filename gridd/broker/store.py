"""The broker's store: the only code that speaks SQL, with its parts store_commit.py (group commit),
store_flow.py (dependencies and --max-running) and store_reads.py (jobs as clients see them).

Rules: one public method per use case, and each is one transaction, run with others that arrived at
the same time in one group commit (store_commit.py). Methods take and return batches: the cost of the
store is its round trips to the database thread, not its rows (DESIGN.md), so one call serves many jobs.
Transitions are conditional UPDATEs (`WHERE id = ? AND lease = ? AND state = ?`) decided by transitions.py.
Nothing is acknowledged by a caller before the method that wrote it has returned, i.e. committed.
"""

from __future__ import annotations

import functools
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable, Container, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import msgspec

from gridd.broker import store_blobs as blobs
from gridd.broker import store_bundles as bundles
from gridd.broker import store_flow as flow
from gridd.broker import store_reads as reads
from gridd.broker import store_retention as retention
from gridd.broker import store_tokens as tokens
from gridd.broker import store_why as why
from gridd.broker import transitions as tr
from gridd.broker.matching import UNLIMITED, Budget, Lane, lane_of_spec
from gridd.broker.observe import Observer
from gridd.broker.schema import migrate
from gridd.broker.store_commit import GroupCommit
from gridd.broker.transitions import Transition
from gridd.protocol.errors import ErrorCode, StorageFailed, UnknownJob
from gridd.protocol.messages import (
    AttemptView,
    BundleFile,
    BundleView,
    JobResult,
    JobSpec,
    JobView,
    LeasedJob,
    LeaseRef,
    Outcome,
    ReportRow,
    TaskOutcome,
    TokenView,
)
from gridd.protocol.payloads import array_length

T = TypeVar("T")

_spec_encoder = msgspec.msgpack.Encoder()
_spec_decoder = msgspec.msgpack.Decoder(JobSpec)


# Reads of at most this many jobs by key are made on the event loop (Store._read_now): the waits' and
# the result long-polls' second reads, after they were told which jobs finished.
SMALL_READ_ROWS = 64
# The specs one lease reply may carry, in all (a reply's frame may hold 16 MiB).
LEASE_REPLY_BYTES = 8 * 1024 * 1024

_INSERT_ATTEMPT = (
    "INSERT OR REPLACE INTO attempts"
    " (job_id, lease, attempt, worker, started_ms, ended_ms, exit_code, outcome, code, bundle,"
    " wall_ms, cpu_user_s, cpu_system_s, max_rss_kb, output_bytes, lent)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _accounting(result: JobResult, lent: bool | None) -> tuple[Any, ...]:
    """The accounting columns of a finished attempt. An older worker measures nothing: its wall time is
    then the span it reported, and its output what it sent."""
    wall = result.wall_ms if result.wall_ms is not None else max(0, result.ended_ms - result.started_ms)
    output = result.output_bytes if result.output_bytes is not None else len(result.stdout) + len(result.stderr)
    return (wall, result.cpu_user_s, result.cpu_system_s, result.max_rss_kb, output, lent)


def _task_result(job_id: int, result: JobResult, accepted: bool) -> tuple[Any, ...]:
    """The results row of a task attempt: its value when it returned (and was accepted), else its error."""
    error = _spec_encoder.encode(result.error) if result.error is not None else None
    if not accepted or error is not None:
        return (job_id, None, None, error)
    return (job_id, result.value, result.value_blob, None)


def _new_lease() -> int:
    """A fencing token: 62 random bits (an int64 on the wire and in SQLite), never 0 (never leased)."""
    return secrets.randbits(62) or 1


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
    # A released or retried job of a capped group queues throttled, and waits for a token.
    "release": "UPDATE jobs SET state = ?, finished_ms = ?, throttled = (SELECT COUNT(*) FROM groups g"
    " WHERE g.id = jobs.group_id AND g.max_running IS NOT NULL) WHERE id = ? AND state = ?",
    "retry": "UPDATE jobs SET state = ?, finished_ms = ?, attempts = 0, exit_code = NULL, reason = NULL,"
    " worker = NULL, not_before_ms = 0, throttled = (SELECT COUNT(*) FROM groups g"
    " WHERE g.id = jobs.group_id AND g.max_running IS NOT NULL) WHERE id = ? AND state = ?",
}


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


class Store:
    """Jobs, leases, attempts and outputs in one SQLite file (WAL)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        next_id: int,
        reader: sqlite3.Connection | None = None,
        observer: Observer | None = None,
    ) -> None:
        self._conn = conn
        self._reader = reader  # read-only, used on the event loop's thread for small reads (_read_now)
        self._next_id = next_id
        self._observer = observer or Observer()
        self._commits = GroupCommit(conn, self._observer)

    async def _call(self, fn: Callable[..., T], *args: Any, _durable: bool = True, **kwargs: Any) -> T:
        """Run one use case in the next group commit (see GroupCommit)."""
        return await self._commits.run(functools.partial(fn, *args, **kwargs), durable=_durable)

    def _read_now(self, fn: Callable[..., T], *args: Any) -> T:
        """A small read (a few rows by key) right here on the event loop's thread, from the read-only
        connection: a trip to the database thread and a transaction cost ten times as much as the read
        itself. In WAL mode it never waits for the writer, and it sees every commit made before it."""
        if self._reader is None:
            raise StorageFailed("the store was opened without its read connection")
        try:
            return fn(self._reader, *args)
        except sqlite3.Error as exc:
            raise StorageFailed(f"the broker could not read the database: {exc}") from exc

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._conn.execute(sql, params).fetchall()

    # ---- submit ----------------------------------------------------------------------------------------

    def _submit_jobs(
        self,
        specs: Sequence[JobSpec],
        now_ms: int,
        *,
        after: Sequence[str] = (),
        new_group: bool = False,
        group: str | None = None,
        max_running: int | None = None,
        owner: str = "admin",
    ) -> tuple[list[Transition], str | None]:
        db = self._conn
        specs = bundles.pin_bundles(db, specs)  # "NAME" runs as the version current now, retries too
        deps = flow.dependency_states(db, after) if after else []
        group_id, throttled = self._group_for(new_group, group, max_running, now_ms)
        unmet = [key for key, state in deps if state != tr.SUCCEEDED]
        dead = next(((key, state) for key, state in deps if state in (tr.FAILED, tr.CANCELLED)), None)
        if dead is not None:
            state, reason, finished = tr.CANCELLED, flow.doom_reason(*dead), now_ms
        else:
            state, reason, finished = (tr.WAITING if unmet else tr.QUEUED), None, None
        first = self._next_id
        rows = [
            (
                first + i,
                state,
                s.queue,
                s.priority,
                s.max_attempts,
                _spec_encoder.encode(s),
                now_ms,
                group_id,
                len(unmet),
                reason,
                finished,
                throttled,
                lane_of_spec(s),
                s.task.records if s.task else None,
                s.cpus,
                s.memory_mb,
                s.task.args_blob if s.task else None,  # a reference retention must see (store_retention.py)
                owner,
            )
            for i, s in enumerate(specs)
        ]
        for s in specs:
            if s.task is not None and s.task.args_blob is not None:
                blobs.blob_size(db, s.task.args_blob)  # refuses a payload that was never uploaded
        db.executemany(
            "INSERT INTO jobs (id, state, queue, priority, max_attempts, spec, submitted_ms, group_id,"
            " pending_deps, reason, finished_ms, throttled, lane, records, cpus, memory_mb, args_blob, owner)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.executemany(
            "INSERT OR IGNORE INTO lanes (queue, lane) VALUES (?, ?)", dict.fromkeys((r[2], r[12]) for r in rows)
        )
        self._next_id = first + len(rows)
        if deps:
            db.executemany(
                "INSERT INTO deps (job_id, dep_id) VALUES (?, ?)", [(r[0], key) for r in rows for key, _ in deps]
            )
        flow.rebalance(db, [rows[0][0]] if group_id is not None else [])
        changed = [Transition(str(r[0]), state, r[2], 0, reason=reason) for r in rows]
        return changed, flow.group_name(group_id)

    def _group_for(
        self, new_group: bool, group: str | None, max_running: int | None, now_ms: int
    ) -> tuple[int | None, int]:
        """The submission's group id, and whether its queued jobs start throttled (a capped group)."""
        if new_group:
            found = self._rows(
                "INSERT INTO groups (max_running, submitted_ms) VALUES (?, ?) RETURNING id", (max_running, now_ms)
            )
            return int(found[0][0]), int(max_running is not None)
        if group is None:
            return None, 0
        kind, key = flow.parse_ref(group)
        found = self._rows("SELECT max_running FROM groups WHERE id = ?", (key,)) if kind == "group" else []
        if not found:
            raise UnknownJob(f"no group has id {group!r}")
        return key, int(found[0][0] is not None)

    # ---- leasing ---------------------------------------------------------------------------------------

    def _lease_jobs(
        self,
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
        candidates: list[tuple[int, int, int, int]] = []
        for queue, lane in dict.fromkeys(lanes):
            # Jobs too big for this request are skipped inside jobs_ready, which covers cpus and
            # memory_mb: a skipped job costs an index entry, never a table row. Head-of-line cost: the
            # rows skipped are the lane's queued jobs that rank ahead of the first one that fits. Within
            # a dispatch pass a lane is read again only under a larger per-job budget (scheduler.py), so
            # once per lane per distinct worker size; jobs too big only for a worker's free budget go to
            # the next worker with room, and only jobs bigger than every connected worker stay at the
            # head, which `gridd show` reports (they are the user's to resize or to give a worker).
            rows = self._rows(
                "SELECT id, priority, cpus, memory_mb FROM jobs WHERE state = 'queued' AND throttled = 0"
                " AND queue = ? AND lane = ? AND not_before_ms <= ? AND cpus <= ? AND memory_mb <= ?"
                " ORDER BY priority DESC, id LIMIT ?",
                (queue, lane, now_ms, job_cpus, job_memory, max_jobs),
            )
            candidates.extend((r[0], r[1], r[2], r[3]) for r in rows)
        if not candidates:
            return [], []
        candidates.sort(key=lambda c: (-c[1], c[0]))
        fits = budget.take((c[2], c[3]) for c in candidates)
        chosen = self._within_reply([c[0] for c, fit in zip(candidates, fits, strict=True) if fit][:max_jobs])
        deadline = now_ms + ttl_ms
        # Each lease's fencing token is drawn at random (a counter could be guessed), and must differ
        # from every earlier lease of its job (attempts' key is (job_id, lease)): a job whose draw does
        # not (odds 2**-62 per earlier lease) is left queued, for the next pass to draw again.
        tokens = [[job_id, _new_lease()] for job_id in chosen]
        rows = self._rows(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease = t.lease,"
            " worker = ?, instance = ?, deadline_ms = ?, started_ms = ?, not_before_ms = 0"
            " FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS lease FROM json_each(?)) t"
            # `+jobs.state` keeps the planner off the jobs_state index, so it drives the join from the chosen
            # ids and finds each job by its key (with that index it scanned every queued job on each lease).
            " WHERE jobs.id = t.id AND +jobs.state = 'queued' AND jobs.throttled = 0 AND jobs.lease != t.lease"
            " AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = t.id AND a.lease = t.lease)"
            " RETURNING jobs.id, jobs.lease, jobs.attempts, jobs.spec, jobs.submitted_ms",
            (worker, instance, deadline, now_ms, msgspec.json.encode(tokens)),
        )
        leased = [
            LeasedJob(job_id=str(r[0]), lease=r[1], attempt=r[2], deadline_ms=deadline, spec=_spec_decoder.decode(r[3]))
            for r in rows
        ]
        leased.sort(key=lambda j: chosen.index(int(j.job_id)))
        return leased, [now_ms - r[4] for r in rows if r[2] == 1]  # first attempts: their wait since submit

    def _within_reply(self, ids: list[int]) -> list[int]:
        """The first of `ids` whose specs fit one lease reply (LEASE_REPLY_BYTES; always at least one):
        jobs of up to 4 MiB each (stdin) must not make a reply too large for the worker to take, which
        would lose the grants with the connection and lease them again, for ever."""
        if len(ids) <= 1:
            return ids
        sizes = dict(
            self._rows(
                "SELECT id, length(spec) FROM jobs WHERE id IN (SELECT value FROM json_each(?))", (flow.ids_json(ids),)
            )
        )
        kept: list[int] = []
        total = 0
        for job_id in ids:
            total += sizes.get(job_id, 0)
            if kept and total > LEASE_REPLY_BYTES:
                break
            kept.append(job_id)
        return kept

    def _next_eligible_ms(self, now_ms: int) -> int | None:
        rows = self._rows("SELECT MIN(not_before_ms) FROM jobs WHERE state = 'queued' AND not_before_ms > ?", (now_ms,))
        return rows[0][0] if rows and rows[0][0] is not None else None

    def _renew_leases(
        self, worker: str, leases: Sequence[LeaseRef], deadline_ms: int, instance: str = ""
    ) -> list[LeaseRef]:
        db = self._conn
        current = self._current_leases([flow.parse_job_id(ref.job_id) for ref in leases])
        valid = [ref for ref in leases if current.get(int(ref.job_id)) == (tr.RUNNING, ref.lease, worker, instance)]
        db.executemany(
            "UPDATE jobs SET deadline_ms = ? WHERE id = ? AND lease = ? AND state = 'running'",
            [(deadline_ms, int(ref.job_id), ref.lease) for ref in valid],
        )
        return [ref for ref in leases if ref not in valid]

    def _current_leases(self, ids: Sequence[int]) -> dict[int, tuple[str, int, str | None, str]]:
        """Job id -> (state, lease, worker, instance) of its current (or last) lease."""
        rows = self._rows(
            "SELECT id, state, lease, worker, instance FROM jobs WHERE id IN (SELECT value FROM json_each(?))",
            (flow.ids_json(ids),),
        )
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

    # ---- completion, expiry, hand-back -------------------------------------------------------------------

    def _complete_jobs(
        self,
        worker: str,
        results: Sequence[JobResult],
        now_ms: int,
        retry_base_ms: int,
        instance: str = "",
        lent: bool | None = None,
    ) -> tuple[list[Outcome], list[Transition]]:
        db = self._conn
        ids = [flow.parse_job_id(r.job_id) for r in results]
        rows = self._rows(
            "SELECT id, state, lease, attempts, max_attempts, queue, started_ms, records, lane, worker, instance"
            " FROM jobs WHERE id IN (SELECT value FROM json_each(?))",
            (flow.ids_json(ids),),
        )
        current = {r[0]: r for r in rows}
        outcomes: list[Outcome] = []
        changed: list[Transition] = []
        updates: list[tuple[Any, ...]] = []
        history: list[tuple[Any, ...]] = []
        outputs: list[tuple[Any, ...]] = []
        task_results: list[tuple[Any, ...]] = []
        for job_id, result in zip(ids, results, strict=True):
            row = current.pop(job_id, None)  # popped: a second result for it in this batch is stale
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
            if (row[9], row[10]) != (worker, instance):  # the current lease, but granted to another worker
                outcomes.append(
                    Outcome(
                        job_id=result.job_id,
                        code=ErrorCode.FOREIGN_LEASE,
                        state=row[1],
                        message=(
                            f"job {result.job_id} is leased to worker {row[9]}"
                            f"{'' if row[9] != worker else ' (another instance of that name)'},"
                            " not to this one; the result was not recorded"
                        ),
                    )
                )
                continue
            attempts, max_attempts, queue = row[3], row[4], row[5]
            exit_code, outcome, reason = result.exit_code, result.outcome, result.message or None
            miscount = self._miscount(result, row[7]) if exit_code == 0 else None
            if miscount is not None:  # the articles' check: one result per record, or the attempt failed
                exit_code, outcome, reason = None, "bad_result", miscount
            state = tr.after_attempt(exit_code, attempts, max_attempts)
            finished = now_ms if state != tr.QUEUED else None
            not_before = now_ms + tr.retry_delay_ms(attempts, retry_base_ms) if state == tr.QUEUED else 0
            updates.append(
                (
                    state,
                    exit_code,
                    finished,
                    not_before,
                    reason,
                    worker if state != tr.QUEUED else None,
                    job_id,
                    result.lease,
                )
            )
            code = result.code or None
            bundle = result.bundle or None
            history.append(
                (job_id, result.lease, attempts, worker, row[6], now_ms, exit_code, outcome, code, bundle)
                + _accounting(result, lent)
            )
            outputs.append((job_id, "stdout", result.stdout, result.stdout_truncated))
            outputs.append((job_id, "stderr", result.stderr, result.stderr_truncated))
            if row[8]:  # a task job: its value, or what it raised
                task_results.append(_task_result(job_id, result, miscount is None))
            if miscount is not None:
                outcomes.append(Outcome(job_id=result.job_id, code=ErrorCode.BAD_RESULT, state=state, message=miscount))
            else:
                outcomes.append(Outcome(job_id=result.job_id, code=0, state=state))
            ran_ms = now_ms - row[6]  # since its lease began
            changed.append(
                Transition(result.job_id, state, queue, attempts, worker, exit_code, reason, tr.RUNNING, ran_ms)
            )
        if task_results:
            db.executemany(
                "INSERT OR REPLACE INTO results (job_id, value, blob, error) VALUES (?, ?, ?, ?)", task_results
            )
        if updates:
            db.executemany(
                "UPDATE jobs SET state = ?, exit_code = ?, finished_ms = ?, not_before_ms = ?, reason = ?,"
                " worker = ?, deadline_ms = NULL WHERE id = ? AND lease = ? AND state = 'running'",
                updates,
            )
            db.executemany(_INSERT_ATTEMPT, history)
            db.executemany("INSERT OR REPLACE INTO outputs VALUES (?, ?, ?, ?)", outputs)
            changed += flow.settle(db, changed, now_ms)
        return outcomes, changed

    def _miscount(self, result: JobResult, records: int | None) -> str | None:
        """Why a batch's result is refused (a count other than its records), or None."""
        if records is None:
            return None
        head = result.value or (blobs.blob_head(self._conn, result.value_blob, 5) if result.value_blob else b"")
        count = array_length(head)
        if count == records:
            return None
        got = "no list of results" if count is None else f"{count} results"
        return f"the task returned {got} for a batch of {records} records; the attempt counts as failed"

    def _expire_leases(self, now_ms: int, lending: Container[str] = ()) -> list[Transition]:
        rows = self._rows(
            "SELECT id, lease, attempts, max_attempts, queue, worker, started_ms FROM jobs"
            " WHERE state = 'running' AND deadline_ms < ?",
            (now_ms,),
        )
        return self._expire(rows, now_ms, "lease expired", lending)

    def _expire(
        self, rows: Sequence[sqlite3.Row], now_ms: int, why: str, lending: Container[str] = ()
    ) -> list[Transition]:
        """`lending`: the workers known to lend a desktop (their expired attempts count as lent)."""
        changed: list[Transition] = []
        updates: list[tuple[Any, ...]] = []
        history: list[tuple[Any, ...]] = []
        for job_id, lease, attempts, max_attempts, queue, worker, started_ms in rows:
            state = tr.QUEUED if attempts < max_attempts else tr.FAILED
            reason = f"{why} on worker {worker} (attempt {attempts} of {max_attempts})"
            updates.append((state, now_ms if state == tr.FAILED else None, reason, job_id, lease))
            # What is known of an attempt whose worker went silent: where and when; nothing it measured.
            lends = None if worker is None else worker in lending
            history.append(
                (job_id, lease, attempts, worker, started_ms, now_ms, None, "lease_expired", None, None)
                + (None, None, None, None, None, lends)
            )
            changed.append(Transition(str(job_id), state, queue, attempts, worker, None, reason, tr.RUNNING))
        if updates:
            self._conn.executemany(
                # The job's exit status is its last attempt's, and an expired attempt has none.
                "UPDATE jobs SET state = ?, finished_ms = ?, reason = ?, worker = NULL, deadline_ms = NULL,"
                " exit_code = NULL WHERE id = ? AND lease = ? AND state = 'running'",
                updates,
            )
            self._conn.executemany(_INSERT_ATTEMPT, history)
            changed += flow.settle(self._conn, changed, now_ms)
        return changed

    def _attach_worker(
        self,
        worker: str,
        running: Sequence[LeaseRef],
        deadline_ms: int,
        now_ms: int,
        restarted: bool,
        instance: str,
        lends: bool = False,
    ) -> tuple[list[LeaseRef], list[Transition]]:
        # Only the leases granted to this instance: those of another instance of the name (the name's
        # owner, away, while another peer uses it) are neither attached nor failed here; they stay
        # until their own worker re-attaches them or their deadline passes.
        rows = self._rows(
            "SELECT id, lease, attempts, max_attempts, queue, worker, started_ms FROM jobs"
            " WHERE state = 'running' AND worker = ? AND instance = ?",
            (worker, instance),
        )
        held = {(str(r[0]), r[1]) for r in rows}
        named = {(ref.job_id, ref.lease) for ref in running}
        lost = [ref for ref in running if (ref.job_id, ref.lease) not in held]
        self._conn.executemany(
            "UPDATE jobs SET deadline_ms = ? WHERE id = ? AND lease = ? AND state = 'running'",
            [(deadline_ms, int(job_id), lease) for job_id, lease in held & named],
        )
        orphans = [r for r in rows if (str(r[0]), r[1]) not in named]
        if restarted:  # a new worker process: the old one may have run them, so the attempt counts
            return lost, self._expire(orphans, now_ms, "worker restarted", {worker} if lends else ())
        # The same process, reconnecting: it names every lease it ever received, so these grants never
        # reached it (lost with the connection) and the jobs never started there.
        back = [LeaseRef(job_id=str(r[0]), lease=r[1]) for r in orphans]
        return lost, self._return_leases(worker, back, "lease grant lost with the connection", instance)

    def _return_leases(
        self,
        worker: str,
        leases: Sequence[LeaseRef],
        why: str = "handed back by a draining worker",
        instance: str = "",
    ) -> list[Transition]:
        db = self._conn
        rows = self._rows(
            "SELECT id, lease, queue, attempts FROM jobs WHERE id IN (SELECT value FROM json_each(?))"
            " AND state = 'running' AND worker = ? AND instance = ?",
            (flow.ids_json(flow.parse_job_id(r.job_id) for r in leases), worker, instance),
        )
        named = {(int(r.job_id), r.lease) for r in leases}
        back = [r for r in rows if (r[0], r[1]) in named]
        db.executemany(
            "UPDATE jobs SET state = 'queued', attempts = attempts - 1, worker = NULL, deadline_ms = NULL"
            " WHERE id = ? AND lease = ? AND state = 'running'",
            [(r[0], r[1]) for r in back],
        )
        return [Transition(str(r[0]), tr.QUEUED, r[2], r[3] - 1, worker, None, why, tr.RUNNING) for r in back]

    def _extend_running_leases(self, deadline_ms: int) -> int:
        db = self._conn
        cur = db.execute("UPDATE jobs SET deadline_ms = MAX(deadline_ms, ?) WHERE state = 'running'", (deadline_ms,))
        return cur.rowcount

    # ---- control actions -----------------------------------------------------------------------------------

    def _control_jobs(
        self, action: str, refs: Sequence[str], now_ms: int
    ) -> tuple[list[Outcome], list[Transition], list[Revoked]]:
        allowed, target = tr.ACTIONS[action]
        db = self._conn
        named = _first_of_each(flow.expand_refs(db, refs))
        rows = self._rows(
            "SELECT id, state, lease, worker, queue, attempts, pending_deps FROM jobs"
            " WHERE id IN (SELECT value FROM json_each(?))",
            (flow.ids_json(key for _, key, _ in named if key is not None),),
        )
        current = {r[0]: r for r in rows}
        outcomes: list[Outcome] = []
        changed: list[Transition] = []
        revoked: list[Revoked] = []
        updates: list[tuple[Any, ...]] = []
        for job_id, key, group in named:
            row = current.get(key) if key is not None else None
            if row is None:
                outcomes.append(Outcome(job_id=job_id, code=3000, message=f"no job or group has id {job_id!r}"))
                continue
            state = row[1]
            refusal = tr.refusal(action, job_id, state) if state not in allowed else None
            if refusal is None and action == "retry":
                refusal = self._retry_refusal(key)  # type: ignore[arg-type]
            if refusal is not None:
                outcomes.append(Outcome(job_id=job_id, code=3001, state=state, message=refusal, group=group))
                continue
            if state == tr.RUNNING and row[3]:
                revoked.append(Revoked(row[3], LeaseRef(job_id=job_id, lease=row[2])))
            # Only a job going back to the queue may have to wait for its dependencies instead.
            pending = row[6] if action == "release" else self._unmet(row[0]) if action == "retry" else 0
            new_state = tr.ready_state(target, pending)
            updates.append((new_state, now_ms if new_state == tr.CANCELLED else None, row[0], state, pending))
            outcomes.append(Outcome(job_id=job_id, code=0, state=new_state, group=group))
            changed.append(Transition(job_id, new_state, row[4], row[5], row[3], None, f"{action} by user", state))
        if updates:
            db.executemany(_CONTROL_SQL[action], [u[:4] for u in updates])
            if action == "retry":
                db.executemany("UPDATE jobs SET pending_deps = ? WHERE id = ?", [(u[4], u[2]) for u in updates])
            changed += flow.settle(db, changed, now_ms)
        return outcomes, changed, revoked

    def _unmet(self, key: int) -> int:
        found = self._rows(
            "SELECT COUNT(*) FROM deps d JOIN jobs x ON x.id = d.dep_id WHERE d.job_id = ? AND x.state != 'succeeded'",
            (key,),
        )
        return int(found[0][0])

    def _retry_refusal(self, key: int) -> str | None:
        """A job cannot be retried while one of its dependencies has failed or been cancelled."""
        found = self._rows(
            "SELECT x.id, x.state FROM deps d JOIN jobs x ON x.id = d.dep_id WHERE d.job_id = ?"
            " AND x.state IN ('failed', 'cancelled') LIMIT 1",
            (key,),
        )
        if not found:
            return None
        verb = "failed" if found[0][1] == tr.FAILED else "was cancelled"
        return f"job {key} depends on job {found[0][0]}, which {verb}; retry that one first"

    def _expand(self, refs: Sequence[str]) -> list[str]:
        named = flow.expand_refs(self._conn, refs)
        for ref, key, _ in named:
            if key is None:
                raise UnknownJob(f"no job or group has id {ref!r}")
        return [job_id for job_id, _, _ in named]

    # ---- reads -----------------------------------------------------------------------------------------------

    # ---- the async face: each call is one hop to the database thread --------------------------------------

    async def submit_jobs(
        self,
        specs: Sequence[JobSpec],
        now_ms: int,
        *,
        after: Sequence[str] = (),
        new_group: bool = False,
        group: str | None = None,
        max_running: int | None = None,
        owner: str = "admin",
    ) -> tuple[list[Transition], str | None]:
        """Insert jobs in one transaction, owned by `owner`; returns them in order with their new ids, and
        their group.

        Jobs wait for the jobs named in `after` (groups expanded); if one of those has already failed
        or been cancelled, they are cancelled at once, with that job named as the reason."""
        return await self._call(
            self._submit_jobs,
            specs,
            now_ms,
            after=after,
            new_group=new_group,
            group=group,
            max_running=max_running,
            owner=owner,
        )

    async def lease_jobs(
        self,
        worker: str,
        lanes: Sequence[Lane],
        max_jobs: int,
        now_ms: int,
        ttl_ms: int,
        budget: Budget | None = None,
        instance: str = "",
    ) -> list[LeasedJob]:
        """Lease up to `max_jobs` of the best eligible jobs (priority, then age) of `lanes` (queue, lane)
        to `worker` (its `instance`), taken greedily in that order while they fit `budget` (None: no limit).
        Each lease gets a fresh random fencing token."""
        leased, waits_ms = await self._call(
            self._lease_jobs, worker, lanes, max_jobs, now_ms, ttl_ms, budget, instance, _durable=False
        )
        if waits_ms:
            self._observer.leased(waits_ms)
        return leased

    async def known_lanes(self) -> list[Lane]:
        """Every (queue, lane) that ever held a job (read once at start; the broker keeps it current)."""
        return await self._call(self._known_lanes, _durable=False)

    def _known_lanes(self) -> list[Lane]:
        return [(r[0], r[1]) for r in self._rows("SELECT queue, lane FROM lanes")]

    async def drop_lanes(self, queues: Sequence[str]) -> None:
        """Forget the lanes of these queues (no job of theirs can be leased; see Broker.drop_idle_lanes)."""
        await self._call(retention.drop_lanes, self._conn, queues, _durable=False)

    async def restore_lanes(self, job_ids: Sequence[str]) -> list[Lane]:
        """The lanes of these jobs, known again (they were retried: their queue may have been dropped)."""
        return await self._call(retention.restore_lanes, self._conn, [flow.parse_job_id(j) for j in job_ids])

    async def next_eligible_ms(self, now_ms: int) -> int | None:
        """When the next delayed job becomes eligible, if any is waiting for its retry delay."""
        return await self._call(self._next_eligible_ms, now_ms, _durable=False)

    async def renew_leases(
        self, worker: str, leases: Sequence[LeaseRef], deadline_ms: int, instance: str = ""
    ) -> list[LeaseRef]:
        """Extend the deadlines of the leases `worker` (its `instance`) still holds; returns those it no
        longer holds."""
        return await self._call(self._renew_leases, worker, leases, deadline_ms, instance, _durable=False)

    async def complete_jobs(
        self,
        worker: str,
        results: Sequence[JobResult],
        now_ms: int,
        retry_base_ms: int,
        instance: str = "",
        lent: bool | None = None,
    ) -> tuple[list[Outcome], list[Transition]]:
        """Record each attempt's outcome exactly once: a result whose lease is not current is refused
        (STALE_LEASE), and so is one for a lease granted to another worker or instance (FOREIGN_LEASE).
        `lent`: the worker lends a desktop (recorded with each attempt, for `gridd report`)."""
        return await self._call(self._complete_jobs, worker, results, now_ms, retry_base_ms, instance, lent)

    async def expire_leases(self, now_ms: int, lending: Container[str] = ()) -> list[Transition]:
        """Reap leases past their deadline: queued again (attempt + 1 next time) or failed after the last.
        `lending`: the workers known to lend a desktop."""
        return await self._call(self._expire_leases, now_ms, lending)

    async def attach_worker(
        self,
        worker: str,
        running: Sequence[LeaseRef],
        deadline_ms: int,
        now_ms: int,
        restarted: bool = True,
        instance: str = "",
        lends: bool = False,
    ) -> tuple[list[LeaseRef], list[Transition]]:
        """A (re)connecting worker names the jobs it still holds: those leases are renewed, the ones no
        longer current are returned as lost. Jobs leased to it that it does not name expire at once
        (an attempt spent) if it is a new process, or go back to the queue unspent if it is the same
        process reconnecting (the grant never reached it). "It" is the worker `instance`: leases of
        the same name granted to another instance are lost to this one and otherwise left alone."""
        return await self._call(self._attach_worker, worker, running, deadline_ms, now_ms, restarted, instance, lends)

    async def return_leases(self, worker: str, leases: Sequence[LeaseRef], instance: str = "") -> list[Transition]:
        """A draining worker hands jobs back: queued again at once, the attempt not spent."""
        return await self._call(self._return_leases, worker, leases, instance=instance)

    async def extend_running_leases(self, deadline_ms: int) -> int:
        """After a restart: give every running lease until `deadline_ms` for its worker to re-attach."""
        return await self._call(self._extend_running_leases, deadline_ms, _durable=False)

    async def control_jobs(
        self, action: str, refs: Sequence[str], now_ms: int
    ) -> tuple[list[Outcome], list[Transition], list[Revoked]]:
        """Apply cancel/hold/release/retry to each job named (a group names all its jobs) where the
        transition is legal; refuse the rest, one Outcome each."""
        return await self._call(self._control_jobs, action, refs, now_ms)

    async def expand(self, refs: Sequence[str]) -> list[str]:
        """Job ids for job and group ids (a group: all its jobs); UnknownJob for one that does not exist."""
        return await self._call(self._expand, refs, _durable=False)

    async def get_job(self, job_id: str) -> tuple[JobView, list[AttemptView]]:
        """One job and its finished attempts; UnknownJob if there is none."""
        return await self._call(reads.get_job, self._conn, job_id, _durable=False)

    async def job_facts(self, job_id: str, running: Sequence[str]) -> why.JobFacts:
        """One job with its dependencies, retry delay and group, and the sizes of the `running` jobs."""
        return await self._call(why.job_facts, self._conn, job_id, running, _durable=False)

    async def get_jobs(self, job_ids: Sequence[str]) -> list[JobView]:
        """The named jobs, in the order named; UnknownJob for the first that does not exist."""
        if len(job_ids) <= SMALL_READ_ROWS and self._reader is not None:
            return self._read_now(reads.get_jobs, job_ids)
        return await self._call(reads.get_jobs, self._conn, job_ids, _durable=False)

    async def list_jobs(
        self,
        state: str | None,
        queue: str | None,
        limit: int,
        before: str | None = None,
        group: str | None = None,
        owner: str | None = None,
    ) -> tuple[list[JobView], bool]:
        """The most recently submitted jobs first, optionally of one state, queue, group and owner, older
        than the job `before` (for paging); limit 0 = all. True with a page its size cut short (read on)."""
        return await self._call(
            reads.list_jobs, self._conn, state, queue, limit, before, group, owner=owner, _durable=False
        )

    async def report(self, by: str, since_ms: int, owner: str | None = None) -> list[ReportRow]:
        """Accounting per owner, queue or worker (`by`) of the attempts ended since `since_ms`; of
        `owner`'s jobs only unless None (store_reads.report)."""
        return await self._call(reads.report, self._conn, by, since_ms, owner, _durable=False)

    async def foreign_job(self, refs: Sequence[str], owner: str) -> tuple[str, str] | None:
        """The first of `refs` (a group: any of its jobs) owned by someone else than `owner`, and whose."""
        return await self._call(reads.foreign_job, self._conn, refs, owner, _durable=False)

    async def job_inputs(self, job_ids: Sequence[str]) -> tuple[set[str], set[str]]:
        """The bundle versions and the blobs the jobs read (see store_reads.job_inputs)."""
        return await self._call(reads.job_inputs, self._conn, job_ids, _durable=False)

    # ---- role tokens (store_tokens.py) --------------------------------------------------------------------

    async def create_token(
        self, name: str, role: str, queues: Sequence[str], secret_sha256: str, now_ms: int, expires_ms: int | None
    ) -> TokenView:
        """Keep a new token by the hash of its secret; InvalidRequest if its name is held by one in force."""
        return await self._call(tokens.create_token, self._conn, name, role, queues, secret_sha256, now_ms, expires_ms)

    async def list_tokens(self) -> list[TokenView]:
        return await self._call(tokens.list_tokens, self._conn, _durable=False)

    async def revoke_token(self, name: str, now_ms: int) -> tokens.TokenRow:
        """The token named `name`, revoked from `now_ms`; InvalidRequest if there is none."""
        return await self._call(tokens.revoke_token, self._conn, name, now_ms)

    def find_token(self, secret_sha256: str) -> tokens.TokenRow | None:
        """The token of that secret hash (one row by a unique key, read right here: see _read_now)."""
        return self._read_now(tokens.find_token, secret_sha256)

    async def touch_tokens(self, used: Sequence[tuple[int, int]]) -> None:
        """Record (ms, token id): when each token was last used (not fsynced: a lost one costs a minute)."""
        await self._call(tokens.touch_tokens, self._conn, used, _durable=False)

    async def read_output(self, job_id: str, stream: str) -> tuple[bytes, bool]:
        """A job's captured stdout or stderr (empty before it has run) and whether it was truncated."""
        return await self._call(reads.read_output, self._conn, job_id, stream, _durable=False)

    async def put_blob(self, blob: str, size: int, offset: int, data: bytes, now_ms: int) -> tuple[int, bool]:
        """Keep a piece of a blob; returns the bytes held, and False if the whole did not hash to its id.
        Partial blobs idle for an hour are dropped on the way (see store_blobs)."""
        # Not fsynced: a submit naming the blob commits later with fsync, and WAL keeps commits in order.
        return await self._call(blobs.put_blob, self._conn, blob, size, offset, data, now_ms, _durable=False)

    async def get_blob(self, blob: str, offset: int) -> tuple[int, bytes]:
        """A complete blob's size and its stored bytes from `offset` (one piece at most)."""
        return await self._call(blobs.get_blob, self._conn, blob, offset, _durable=False)

    async def push_bundle(
        self, name: str, files: Sequence[BundleFile], now_ms: int
    ) -> tuple[int, bool, list[str], str]:
        """Make `files` the next version of bundle `name` if every blob is here (see store_bundles)."""
        return await self._call(bundles.push_bundle, self._conn, name, files, now_ms)

    async def list_bundles(self, name: str | None) -> list[BundleView]:
        """Every version of every bundle (or of `name`), by name then version."""
        return await self._call(bundles.list_bundles, self._conn, name, _durable=False)

    async def get_bundle(self, ref: str) -> tuple[BundleView, list[BundleFile]]:
        """The bundle version `ref` names ("NAME@N", or "NAME": the latest) and its files."""
        return await self._call(bundles.get_bundle, self._conn, ref, _durable=False)

    async def read_results(
        self, job_ids: Sequence[str], max_bytes: int, *, finished_only: bool = False
    ) -> list[TaskOutcome]:
        """Task jobs' recorded results, in order, as many as fit in `max_bytes` (at least one);
        `finished_only`: of the jobs that have finished."""
        if len(job_ids) <= SMALL_READ_ROWS and self._reader is not None:
            return self._read_now(blobs.read_results, job_ids, max_bytes, finished_only)
        return await self._call(blobs.read_results, self._conn, job_ids, max_bytes, finished_only, _durable=False)

    async def purge_finished(self, cutoff_ms: int, max_jobs: int) -> list[tuple[str, str, str]]:
        """Remove up to `max_jobs` jobs finished before `cutoff_ms`, with what only they refer to; returns
        (id, queue, state) of each (see store_retention)."""
        return await self._call(retention.purge_finished, self._conn, cutoff_ms, max_jobs)

    async def count_by_queue(self) -> dict[str, dict[str, int]]:
        """queue -> state -> number of jobs (read once at start; the broker keeps it current)."""
        return await self._call(reads.count_by_queue, self._conn, _durable=False)


@asynccontextmanager
async def open_store(path: Path, observer: Observer | None = None) -> AsyncIterator[Store]:
    """Open (creating and migrating if needed) the database at `path`, in WAL mode, fsync on commit."""
    conn = await anyio.to_thread.run_sync(_connect, path)
    reader: sqlite3.Connection | None = None
    try:
        reader = await anyio.to_thread.run_sync(_connect_reader, path)
        next_id = await anyio.to_thread.run_sync(_last_job_id, conn) + 1
        yield Store(conn, next_id=next_id, reader=reader, observer=observer)
    finally:
        with anyio.CancelScope(shield=True):
            if reader is not None:
                reader.close()
            await anyio.to_thread.run_sync(conn.close)


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: every transaction is an explicit BEGIN IMMEDIATE ... COMMIT (GroupCommit).
        # Used from one thread at a time (the store's limiter), not always the same one.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit survives a power cut, not only a killed broker; batching pays for it.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA busy_timeout = 5000")
        migrate(conn)
    except (OSError, sqlite3.Error) as exc:
        raise StorageFailed(f"cannot open the database {path}: {exc}") from exc
    return conn


def _connect_reader(path: Path) -> sqlite3.Connection:
    """A second connection, read-only, for the small reads made on the event loop (Store._read_now)."""
    try:
        uri = path.resolve().as_uri() + "?mode=ro"  # as_uri escapes what a URI may not hold ("?", "#", "%")
        reader = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        reader.execute("PRAGMA query_only = 1")
        reader.execute("PRAGMA busy_timeout = 1000")
    except sqlite3.Error as exc:
        raise StorageFailed(f"cannot open the database {path} for reading: {exc}") from exc
    return reader


def _last_job_id(conn: sqlite3.Connection) -> int:
    """The largest id given so far: of the jobs there are, or of those retention removed."""
    row = conn.execute(
        "SELECT MAX(COALESCE((SELECT MAX(id) FROM jobs), 0), COALESCE((SELECT value FROM meta WHERE key = ?), 0))",
        (retention.LAST_JOB_ID,),
    ).fetchone()
    return int(row[0])

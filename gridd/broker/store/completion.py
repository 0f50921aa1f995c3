"""Completion: workers' results recorded, each attempt's outcome exactly once. Part of the store.

Rules: a result counts only for the job's current lease, from the worker instance it was granted to;
any other is refused with its Outcome (STALE_LEASE, FOREIGN_LEASE) and changes nothing. The job's retry
policy (retry_policy.py) says whether a failed attempt runs again and when, or fails the job (its cause
not retried, the job poison, its last attempt); the transition table says whether that move is legal
(succeeded, queued again for a retry after its delay, failed). The job's row, its attempt, its output
and a task's result or error commit together with what the change sets off (flow.settle: dependents,
group tokens). An attempt's output replaces the last one's; an attempt that wrote nothing (both streams
empty, neither cut) leaves no rows, since a job without them reads as empty (most jobs of a busy grid print
nothing: two rows each would be most of a completion's writes). A batch task that returned another number
of results than it had records fails its attempt (BAD_RESULT). The jobs named are locked as they are read
(by id), so a second broker given a result for the same lease at once waits, then refuses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

import gridd.broker.store.attempts as attempts
import gridd.broker.store.blobs as blobs
import gridd.broker.store.flow as flow
import gridd.broker.store.retries as retry_store
from gridd.broker import retry_policy as policy
from gridd.broker import transitions as tr
from gridd.broker.store.refs import parse_job_id
from gridd.broker.store.sql import BY_ID_FOR_UPDATE, RowUpdate, Tx, rows, rows_of
from gridd.broker.transitions import Transition
from gridd.protocol.errors import ErrorCode
from gridd.protocol.messages import JobResult, Outcome
from gridd.protocol.payloads import array_length
from gridd.protocol.states import JobState

_encoder = msgspec.msgpack.Encoder()

_ENDED = JobState.RUNNING  # the state an attempt ends from (the table's source of SUCCEED, REQUEUE, FAIL)
_END = RowUpdate(
    "UPDATE jobs SET state = :state, exit_code = :exit_code, finished_ms = :finished_ms,"
    " not_before_ms = :not_before_ms, reason = :reason, worker = :worker, deadline_ms = NULL,"
    " strikes = COALESCE(:strikes, strikes), poison = :poison WHERE id = :id AND lease = :lease AND state = :was",
    state="text",
    exit_code="bigint",
    finished_ms="bigint",
    not_before_ms="bigint",
    reason="text",
    worker="text",
    strikes="text",
    poison="int",
    id="bigint",
    lease="bigint",
    was="text",
)
# The jobs a batch of results names, locked until the batch commits: another broker given a result for the
# same lease at once waits, then reads the lease ended and refuses it (one outcome per attempt).
_CURRENT_SQL = (
    "SELECT id, state, lease, attempts, max_attempts, queue, started_ms, records, lane, worker, instance, gang,"  # noqa: S608
    f" {flow.THROTTLED} FROM jobs WHERE id IN (SELECT value FROM json_each(?)){BY_ID_FOR_UPDATE}"
)
GANG = 11  # the column of a current row that says whether the job is a gang (> 0)
_CAPPED = 12  # the column that says whether the job's group is capped (--max-running: 1, else 0)
_RESULT_SQL = (
    "INSERT INTO results (job_id, value, blob, error) VALUES (?, ?, ?, ?) ON CONFLICT (job_id)"
    " DO UPDATE SET value = excluded.value, blob = excluded.blob, error = excluded.error"
)
_OUTPUT_SQL = (
    f"INSERT INTO outputs (job_id, stream, data, truncated) {rows_of('bigint', 'text', 'bytea', 'int')}"
    " ON CONFLICT (job_id, stream)"
    " DO UPDATE SET data = excluded.data, truncated = excluded.truncated"
)
_NO_OUTPUT_SQL = "DELETE FROM outputs WHERE job_id IN (SELECT value FROM json_each(?))"


def complete_jobs(
    db: Tx,
    worker: str,
    results: Sequence[JobResult],
    now_ms: int,
    retry_base_ms: int,
    instance: str = "",
    lent: bool | None = None,
    current: dict[int, Any] | None = None,
) -> tuple[list[Outcome], list[Transition]]:
    """`current`: the jobs' rows as current_rows read them, if the caller did (they are taken from it)."""
    ids = [parse_job_id(r.job_id) for r in results]
    current = current_rows(db, ids) if current is None else current
    outcomes: list[Outcome | None] = []  # in the order of `results`; None: to be decided below
    accepted: list[tuple[int, int, Any, JobResult, int | None, str, str | None, str | None]] = []
    for job_id, result in zip(ids, results, strict=True):
        row = current.pop(job_id, None)  # popped: a second result for it in this batch is stale
        refused = _refusal(row, result, worker, instance)
        outcomes.append(refused)
        if refused is not None:
            continue
        exit_code, outcome, reason = result.exit_code, result.outcome, result.message or None
        miscount = _miscount(db, result, row[7]) if exit_code == 0 else None
        if miscount is not None:  # the articles' check: one result per record, or the attempt failed
            exit_code, outcome, reason = None, "bad_result", miscount
        accepted.append((len(outcomes) - 1, job_id, row, result, exit_code, outcome, reason, miscount))
    # A failed attempt's fate is its job's retry policy's (retry_policy.py): read for those only.
    failed = retry_store.policies(db, [a[1] for a in accepted if a[4] != 0])
    changed: list[Transition] = []
    updates: list[tuple[Any, ...]] = []
    ended: list[tuple[attempts.Attempt, attempts.Measured]] = []
    outputs: list[tuple[Any, ...]] = []
    silent: list[int] = []  # attempts that wrote nothing: no rows (none reads as empty)
    task_results: list[tuple[Any, ...]] = []
    for index, job_id, row, result, exit_code, outcome, reason, miscount in accepted:
        attempt, max_attempts, queue = row[3], row[4], row[5]
        move, delay, strikes, poison = tr.Move.SUCCEED, 0, None, False
        if exit_code != 0:
            retries, struck = failed[job_id]
            failure = policy.failure_of(exit_code, outcome)
            verdict = policy.after_failure(
                retries, failure, worker, attempt, max_attempts, struck, retry_base_ms, reason
            )
            move, delay, reason, poison = verdict.move, verdict.delay_ms, verdict.reason, verdict.poison
            strikes = retry_store.strikes_text(verdict.strikes)
        new = tr.step(row[1], move)
        again = new == JobState.QUEUED
        updates.append(
            (
                new,
                exit_code,
                None if again else now_ms,
                now_ms + delay if again and delay else 0,  # 0: at once
                reason,
                None if again else worker,
                strikes,
                int(poison),
                job_id,
                result.lease,
                _ENDED,
            )
        )
        ran = (job_id, result.lease, attempt, worker, row[6], now_ms, exit_code, outcome)
        ended.append((ran + (result.code or None, result.bundle or None), attempts.measured(result, lent)))
        if result.stdout or result.stderr or result.stdout_truncated or result.stderr_truncated:
            outputs.append((job_id, "stdout", result.stdout, int(result.stdout_truncated)))
            outputs.append((job_id, "stderr", result.stderr, int(result.stderr_truncated)))
        else:
            silent.append(job_id)
        if row[8]:  # a task job: its value, or what it raised
            task_results.append(_task_result(job_id, result, miscount is None))
        if miscount is not None:
            outcomes[index] = Outcome(job_id=result.job_id, code=ErrorCode.BAD_RESULT, state=new, message=miscount)
        else:
            outcomes[index] = Outcome(job_id=result.job_id, code=0, state=new)
        ran_ms = now_ms - row[6]  # since its lease began
        changed.append(Transition(result.job_id, new, queue, attempt, worker, exit_code, reason, row[1], ran_ms))
    if task_results:
        db.executemany(_RESULT_SQL, task_results)
    if updates:
        db.update_rows(_END, updates)
        attempts.record(db, ended)
        db.insert_rows(_OUTPUT_SQL, outputs)
        if silent:  # an earlier attempt's output is not this one's
            db.execute(_NO_OUTPUT_SQL, (db.ids(silent),))
        uncapped = {a[1] for a in accepted if not a[2][_CAPPED]}
        changed += flow.settle(db, changed, now_ms, uncapped)
    return [o for o in outcomes if o is not None], changed


def current_rows(db: Tx, ids: Sequence[int]) -> dict[int, Any]:
    """The rows of the jobs named, locked by id until the transaction ends."""
    return {r[0]: r for r in rows(db, _CURRENT_SQL, (db.ids(ids),))}


def _refusal(row: Any, result: JobResult, worker: str, instance: str) -> Outcome | None:
    """Why a result is not recorded (its lease is not the job's current one, or not this worker's)."""
    if row is None or row[1] != _ENDED or row[2] != result.lease:
        was = row[1] if row else "unknown"
        return Outcome(
            job_id=result.job_id,
            code=ErrorCode.STALE_LEASE,
            state=was,
            message=(
                f"lease {result.lease} of job {result.job_id} is no longer current"
                f" (state={was}, lease={row[2] if row else None}); the result was not recorded"
            ),
        )
    if (row[9], row[10]) != (worker, instance):  # the current lease, but granted to another worker
        return Outcome(
            job_id=result.job_id,
            code=ErrorCode.FOREIGN_LEASE,
            state=row[1],
            message=(
                f"job {result.job_id} is leased to worker {row[9]}"
                f"{'' if row[9] != worker else ' (another instance of that name)'},"
                " not to this one; the result was not recorded"
            ),
        )
    return None


def _miscount(db: Tx, result: JobResult, records: int | None) -> str | None:
    """Why a batch's result is refused (a count other than its records), or None."""
    if records is None:
        return None
    head = result.value or (blobs.blob_head(db, result.value_blob, 5) if result.value_blob else b"")
    count = array_length(head)
    if count == records:
        return None
    got = "no list of results" if count is None else f"{count} results"
    return f"the task returned {got} for a batch of {records} records; the attempt counts as failed"


def _task_result(job_id: int, result: JobResult, accepted: bool) -> tuple[Any, ...]:
    """The results row of a task attempt: its value when it returned (and was accepted), else its error."""
    error = _encoder.encode(result.error) if result.error is not None else None
    if not accepted or error is not None:
        return (job_id, None, None, error)
    return (job_id, result.value, result.value_blob, None)

"""Submit: jobs in, in one transaction with their dependencies, group and lanes. Part of the store.

Rules: ids are given in order and never twice: the next is one past the largest ever given, of the jobs
there are or of those retention removed (kept in `meta`); one submit's ids are consecutive, whichever
broker takes them (`_take_ids`). A job's bundle is pinned to a version here, so
its retries run the same files; a task's arguments blob must be complete before a job names it. A job
starts as the transition table says: queued, scheduled until its start time, waiting for its
dependencies, or cancelled at once when one of them has failed or been cancelled already.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

import gridd.broker.store.blobs as blobs
import gridd.broker.store.bundles as bundles
import gridd.broker.store.flow as flow
import gridd.broker.store.gangs as gangs
import gridd.broker.store.start_times as start_times
from gridd.broker import transitions as tr
from gridd.broker.matching import lane_of_spec
from gridd.broker.store.refs import group_name, parse_ref
from gridd.broker.store.retention import LAST_JOB_ID
from gridd.broker.store.sql import FOR_SHARE, Tx, rows, rows_of
from gridd.broker.transitions import Move, Transition
from gridd.protocol.errors import UnknownJob
from gridd.protocol.messages import JobSpec
from gridd.protocol.states import JobState

_spec_encoder = msgspec.msgpack.Encoder()

# What is the same for every job of a submit is a parameter once, not once per row: an INSERT's cost grew
# with its placeholders (benchmarks/README.md).
_INSERT_JOB = (
    "INSERT INTO jobs (submitted_ms, group_id, pending_deps, reason, finished_ms, throttled, owner,"  # noqa: S608
    " id, state, queue, priority, max_attempts, spec, lane, records, cpus, memory_mb, args_blob)"
    " SELECT CAST(? AS bigint), CAST(? AS bigint), CAST(? AS bigint), CAST(? AS text), CAST(? AS bigint),"
    " CAST(? AS int), CAST(? AS text), r.*"
    " FROM ("
    + rows_of(
        *("bigint", "text", "text", "bigint", "bigint", "bytea"),
        *("text", "bigint", "bigint", "bigint", "text"),
    )
    + ") AS r"
)


def submit_jobs(
    db: Tx,
    specs: Sequence[JobSpec],
    now_ms: int,
    *,
    after: Sequence[str] = (),
    new_group: bool = False,
    group: str | None = None,
    max_running: int | None = None,
    owner: str = "admin",
) -> tuple[list[Transition], str | None]:
    specs = bundles.pin_bundles(db, specs)  # "NAME" runs as the version current now, retries too
    deps = flow.dependency_states(db, after) if after else []
    group_id, throttled = _group_for(db, new_group, group, max_running, now_ms)
    unmet = [key for key, state in deps if state != JobState.SUCCEEDED]
    dead = next(((key, state) for key, state in deps if state in flow.DOOMING), None)
    if dead is not None:
        state, reason, finished = tr.step(tr.NEW, Move.DEP_LOST), flow.doom_reason(*dead), now_ms
    else:
        state, reason, finished = tr.step(tr.NEW, Move.SUBMIT, pending_deps=len(unmet)), None, None
    # A job whose start time is ahead (submit --at/--in) is scheduled instead (start_times.py).
    ahead = [dead is None and start_times.ahead(s, now_ms) for s in specs]
    first = _take_ids(db, len(specs))
    new = [
        (
            first + i,
            tr.step(tr.NEW, Move.SUBMIT, len(unmet), start_ahead=True) if ahead[i] else state,
            s.queue,
            s.priority,
            s.max_attempts,
            _spec_encoder.encode(s),
            lane_of_spec(s),
            s.task.records if s.task else None,
            s.cpus,
            s.memory_mb,
            s.task.args_blob if s.task else None,  # a reference retention must see (retention.py)
        )
        for i, s in enumerate(specs)
    ]
    for s in specs:
        if s.task is not None and s.task.args_blob is not None:
            blobs.blob_size(db, s.task.args_blob)  # refuses a payload that was never uploaded
    db.insert_rows(_INSERT_JOB, new, (now_ms, group_id, len(unmet), reason, finished, throttled, owner))
    start_times.keep_start_times(db, [r[0] for r in new], specs)
    gangs.keep_gang_sizes(db, [r[0] for r in new], specs)
    lanes = dict.fromkeys((r[2], r[6]) for r in new)
    db.executemany("INSERT INTO lanes (queue, lane) VALUES (?, ?) ON CONFLICT DO NOTHING", lanes)
    if deps:
        db.executemany("INSERT INTO deps (job_id, dep_id) VALUES (?, ?)", [(r[0], key) for r in new for key, _ in deps])
    flow.rebalance(db, [new[0][0]] if group_id is not None else [])
    changed = [Transition(str(r[0]), r[1], r[2], 0, reason=reason) for r in new]
    return changed, group_name(group_id)


def last_job_id(db: Tx) -> int:
    """The largest id given so far: of the jobs there are, or of those retention removed."""
    row = db.execute(
        "SELECT COALESCE((SELECT MAX(id) FROM jobs), 0), COALESCE((SELECT value FROM meta WHERE key = ?), 0)",
        (LAST_JOB_ID,),
    ).fetchone()
    return max(int(row[0]), int(row[1]))


def _group_for(
    db: Tx, new_group: bool, group: str | None, max_running: int | None, now_ms: int
) -> tuple[int | None, int]:
    """The submission's group id, and whether its queued jobs start throttled (a capped group)."""
    if new_group:
        found = rows(
            db, "INSERT INTO groups (max_running, submitted_ms) VALUES (?, ?) RETURNING id", (max_running, now_ms)
        )
        return int(found[0][0]), int(max_running is not None)
    if group is None:
        return None, 0
    kind, key = parse_ref(group)
    # Shared: a purge on another broker that would remove the group (its last job gone) waits for this submit.
    found = rows(db, f"SELECT max_running FROM groups WHERE id = ?{FOR_SHARE}", (key,)) if kind == "group" else []  # noqa: S608
    if not found:
        raise UnknownJob(f"no group has id {group!r}")
    return key, int(found[0][0] is not None)


def _take_ids(db: Tx, count: int) -> int:
    """The first of `count` consecutive new ids (keys.py relies on their being consecutive).

    SQLite has one writer: one past the largest id given is free. On PostgreSQL several brokers submit at
    once, so the ids are taken from one row of `meta`, locked until the submit commits: the next submit,
    on any broker, waits for it and goes on from there. The row never lags the jobs (a database moved
    from SQLite, or whose row is missing, catches up with MAX(id) here)."""
    if db.dialect == "sqlite":
        return last_job_id(db) + 1
    for _ in range(2):
        row = db.execute(_TAKE_IDS, (count, LAST_JOB_ID)).fetchone()
        if row is not None:
            return int(row[0]) - count + 1
        # No row yet: made (at most once, whoever comes first), then taken from as above.
        db.execute("INSERT INTO meta (key, value) VALUES (?, 0) ON CONFLICT (key) DO NOTHING", (LAST_JOB_ID,))
    raise AssertionError("the meta row of the last job id was inserted, yet is not there")


# PostgreSQL only (see _take_ids). MAX(id) is taken from the statement's snapshot, which may miss jobs another
# broker committed while this waited for the row's lock; the row's value, read after the wait, counts them.
_TAKE_IDS = (
    "UPDATE meta SET value = GREATEST(value, (SELECT COALESCE(MAX(id), 0) FROM jobs)) + ? WHERE key = ? RETURNING value"
)

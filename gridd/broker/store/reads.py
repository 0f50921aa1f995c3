"""The store's reads: jobs as clients see them. Part of the store, run on its database thread."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import msgspec

import gridd.broker.store.bundles as bundles
import gridd.broker.store.sql as sql
from gridd.broker.store.refs import group_name, parse_job_id, parse_ref
from gridd.broker.store.sql import Fragment, Tx
from gridd.protocol.errors import UnknownBundle, UnknownJob
from gridd.protocol.limits import LIST_REPLY_BYTES
from gridd.protocol.messages import AttemptView, JobView, ReportRow
from gridd.protocol.states import JobState


class _SpecView(msgspec.Struct, frozen=True):
    """The part of a stored JobSpec a JobView shows: its env, stdin and task arguments are skipped
    while decoding, never copied."""

    argv: list[str]
    timeout_s: float | None = None
    task: _TaskName | None = None
    bundle: str | None = None
    cpus: int = 1
    memory_mb: int = 0
    requires: dict[str, str] = msgspec.field(default_factory=dict)
    retry_on: list[str] = msgspec.field(default_factory=list)
    retry_delay_s: float | None = None
    schedule: str | None = None
    gang: int = 0


class _TaskName(msgspec.Struct, frozen=True):
    name: str


_spec_decoder = msgspec.msgpack.Decoder(_SpecView)
_size = msgspec.msgpack.Encoder()

# A job's dependencies as one JSON text (NULL for none on PostgreSQL, "[]" on SQLite: both read as none).
_DEPS = Fragment("json_group_array(dep_id)", "json_agg(dep_id ORDER BY dep_id)::text")
_VIEW_COLUMNS = (
    "j.id, j.state, j.queue, j.priority, j.spec, j.attempts, j.max_attempts, j.exit_code, j.worker, "  # noqa: S608
    "j.submitted_ms, j.started_ms, j.finished_ms, j.reason, "
    "(SELECT length(data) FROM outputs WHERE job_id = j.id AND stream = 'stdout'), "
    "(SELECT length(data) FROM outputs WHERE job_id = j.id AND stream = 'stderr'), "
    f"j.group_id, (SELECT {_DEPS} FROM deps WHERE job_id = j.id), j.owner"
    ", j.poison"
    ", j.start_ms"
)


def get_job(conn: Tx, job_id: str) -> tuple[JobView, list[AttemptView]]:
    key = parse_job_id(job_id)
    rows = sql.rows(conn, f"SELECT {_VIEW_COLUMNS} FROM jobs j WHERE j.id = ?", (key,))  # noqa: S608
    if not rows:
        raise UnknownJob(f"no job has id {job_id!r}")
    history = sql.rows(
        conn,
        "SELECT attempt, worker, lease, started_ms, ended_ms, exit_code, outcome, code, bundle,"
        " wall_ms, cpu_user_s, cpu_system_s, max_rss_kb, output_bytes, lent FROM attempts"
        " WHERE job_id = ? ORDER BY ended_ms, attempt",  # leases are random: never ordered
        (key,),
    )
    attempts = [
        AttemptView(
            attempt=h[0],
            worker=h[1],
            lease=h[2],
            started_ms=h[3],
            ended_ms=h[4],
            exit_code=h[5],
            outcome=h[6],
            code=h[7],
            bundle=h[8],
            wall_ms=h[9],
            cpu_user_s=h[10],
            cpu_system_s=h[11],
            max_rss_kb=h[12],
            output_bytes=h[13],
            lent=None if h[14] is None else bool(h[14]),
        )
        for h in history
    ]
    return _view(rows[0]), attempts


def get_jobs(conn: Tx, job_ids: Sequence[str]) -> list[JobView]:
    keys = [parse_job_id(j) for j in job_ids]
    rows = sql.rows(
        conn,
        f"SELECT {_VIEW_COLUMNS} FROM jobs j WHERE j.id IN (SELECT value FROM json_each(?))",  # noqa: S608
        (conn.ids(keys),),
    )
    found = {r[0]: _view(r) for r in rows}
    for job_id, key in zip(job_ids, keys, strict=True):
        if key not in found:
            raise UnknownJob(f"no job has id {job_id!r}")
    return [found[k] for k in keys]


def list_jobs(
    conn: Tx,
    state: str | None,
    queue: str | None,
    limit: int,
    before: str | None = None,
    group: str | None = None,
    owner: str | None = None,
) -> tuple[list[JobView], bool]:
    """A page of jobs, newest first, and whether it was cut by LIST_REPLY_BYTES (their encoded size) before
    `limit` rows: rows are read a few at a time, so a listing holds one page, never the whole result.
    `owner`: only the jobs of that owner (a submit credential lists its own)."""
    cursor = parse_job_id(before) if before else 2**62
    group_key = None
    if group is not None:
        kind, group_key = parse_ref(group)
        if kind != "group" or not sql.rows(conn, "SELECT 1 FROM groups WHERE id = ?", (group_key,)):
            raise UnknownJob(f"no group has id {group!r}")
    # Only the filters given are written, so that each statement's plan may use its index (jobs_state,
    # jobs_owner, or the key read backwards) instead of testing "? IS NULL" on every row. The state is a
    # literal (from the enum): PostgreSQL plans each state for how many jobs are in it, also once prepared.
    if state is not None and state not in _STATE_NAMES:
        return [], False
    filters = {"j.queue": queue, "j.group_id": group_key, "j.owner": owner}
    given = [(column, value) for column, value in filters.items() if value is not None]
    where = "" if state is None else f" AND j.state = {sql.state(JobState(state))}"
    where += "".join(f" AND {column} = ?" for column, _ in given)
    statement = f"SELECT {_VIEW_COLUMNS} FROM jobs j WHERE j.id < ?{where} ORDER BY j.id DESC LIMIT ?"  # noqa: S608
    values = [value for _, value in given]
    views: list[JobView] = []
    size, page = 0, _FIRST_PAGE
    while True:
        want = page if limit <= 0 else min(page, limit - len(views))
        rows = sql.rows(conn, statement, (cursor, *values, want))
        for row in rows:
            view = _view(row)
            size += len(_size.encode(view))
            if views and size > LIST_REPLY_BYTES:
                return views, True
            views.append(view)
        if len(rows) < want or len(views) == limit:
            return views, False
        cursor, page = rows[-1][0], min(page * 2, _LAST_PAGE)


_STATE_NAMES = frozenset(str(member) for member in JobState)
# Rows read per statement of a listing: few at first (a spec may be megabytes: the byte cut comes early),
# more while pages come back full.
_FIRST_PAGE, _LAST_PAGE = 16, 1024


def read_output(conn: Tx, job_id: str, stream: str) -> tuple[bytes, bool]:
    key = parse_job_id(job_id)
    rows = sql.rows(
        conn,
        "SELECT j.id, o.data, o.truncated FROM jobs j LEFT JOIN outputs o ON o.job_id = j.id AND o.stream = ?"
        " WHERE j.id = ?",
        (stream, key),
    )
    if not rows:
        raise UnknownJob(f"no job has id {job_id!r}")
    return (bytes(rows[0][1] or b""), bool(rows[0][2]))


def foreign_job(conn: Tx, refs: Sequence[str], owner: str) -> tuple[str, str] | None:
    """The first of `refs` (a job, or a group: any of its jobs) that holds a job of another owner than
    `owner`, as (ref, that owner); None if all are `owner`'s. Unknown ids are passed over (the request
    itself refuses them)."""
    jobs: dict[int, str] = {}
    for ref in refs:
        try:
            kind, key = parse_ref(ref)
        except UnknownJob:
            continue
        if kind == "job":
            jobs.setdefault(key, ref)
            continue
        found = sql.rows(conn, "SELECT owner FROM jobs WHERE group_id = ? AND owner != ? LIMIT 1", (key, owner))
        if found:
            return ref, str(found[0][0])
    if not jobs:
        return None
    found = sql.rows(
        conn,
        "SELECT id, owner FROM jobs WHERE id IN (SELECT value FROM json_each(?)) AND owner != ? ORDER BY id LIMIT 1",
        (conn.ids(list(jobs)), owner),
    )
    return (jobs[found[0][0]], str(found[0][1])) if found else None


def job_inputs(conn: Tx, job_ids: Sequence[str]) -> tuple[set[str], set[str]]:
    """What the jobs need from the broker: the bundle versions they run in ("NAME@N") and the blobs they
    read (a task's arguments blob, every file of those bundle versions)."""
    keys = [parse_job_id(j) for j in job_ids]
    rows = sql.rows(
        conn,
        "SELECT spec, args_blob FROM jobs WHERE id IN (SELECT value FROM json_each(?))",
        (conn.ids(keys),),
    )
    refs = {b for r in rows if (b := _spec_decoder.decode(r[0]).bundle) is not None}
    blobs = {str(r[1]) for r in rows if r[1] is not None}
    for ref in refs:
        with contextlib.suppress(UnknownBundle):
            blobs.update(f.blob for f in bundles.get_bundle(conn, ref)[1])
    return refs, blobs


def count_by_queue(conn: Tx) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for queue, state, n in sql.rows(conn, "SELECT queue, state, COUNT(*) FROM jobs GROUP BY queue, state"):
        counts.setdefault(queue, {})[state] = n
    return counts


def _view(r: Sequence[Any]) -> JobView:
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
        group=group_name(r[15]),
        after=[str(d) for d in json.loads(r[16])] if r[16] else [],
        bundle=spec.bundle,
        cpus=spec.cpus,
        memory_mb=spec.memory_mb,
        requires=spec.requires,
        task=spec.task.name if spec.task is not None else None,
        owner=r[17],
        retry_on=spec.retry_on,
        retry_delay_s=spec.retry_delay_s,
        poison=bool(r[18]),
        start_at_ms=r[19],
        schedule=spec.schedule,
        gang=spec.gang,
    )


_FINISHED = sql.states((JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED))
# What `gridd report` groups by: a fixed expression per choice, never the caller's text.
_REPORT_KEYS = {"owner": "j.owner", "queue": "j.queue", "worker": "COALESCE(a.worker, '-')"}


def report(conn: Tx, by: str, since_ms: int, owner: str | None = None) -> list[ReportRow]:
    """Accounting of the attempts that ended at or after `since_ms` (of `owner`'s jobs only, unless None),
    one row per group, in one aggregate query. A job counts as finished in the group of its last attempt
    (the one whose lease is the job's): once, however many attempts it took. CPU and wall time sum what
    was measured (NULL, not measured, adds nothing)."""
    key = _REPORT_KEYS[by]
    lent = "a.lent = 1"
    last = "a.lease = j.lease"
    rows = sql.rows(
        conn,
        f"SELECT {key} AS g,"  # noqa: S608 - `key` is one of _REPORT_KEYS
        f" COUNT(DISTINCT CASE WHEN {last} AND j.state IN {_FINISHED} THEN j.id END),"
        f" COUNT(DISTINCT CASE WHEN {last} AND j.state = {sql.state(JobState.SUCCEEDED)} THEN j.id END),"
        " COUNT(*),"
        " SUM(a.cpu_user_s + a.cpu_system_s) / 3600.0,"
        " SUM(a.wall_ms) / 3600000.0,"
        f" COUNT(CASE WHEN {lent} THEN 1 END),"
        f" SUM(CASE WHEN {lent} THEN a.cpu_user_s + a.cpu_system_s END) / 3600.0,"
        f" SUM(CASE WHEN {lent} THEN a.wall_ms END) / 3600000.0"
        " FROM attempts a JOIN jobs j ON j.id = a.job_id"
        f" WHERE a.ended_ms >= ?{'' if owner is None else ' AND j.owner = ?'}"
        " GROUP BY g ORDER BY g",
        (since_ms,) if owner is None else (since_ms, owner),
    )
    return [
        ReportRow(
            group=r[0],
            jobs=r[1],
            succeeded=r[2],
            attempts=r[3],
            cpu_hours=_hours(r[4]),
            wall_hours=_hours(r[5]),
            lent_attempts=r[6],
            lent_cpu_hours=_hours(r[7]),
            lent_wall_hours=_hours(r[8]),
        )
        for r in rows
    ]


def _hours(total: float | Decimal | None) -> float:
    """A SUM of hours as a float: NULL when nothing was measured; PostgreSQL's sum of integers is a Decimal."""
    return 0.0 if total is None else float(total)

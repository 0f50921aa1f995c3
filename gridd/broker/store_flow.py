"""The store's rules for jobs that depend on others (--after) and for groups run N at a time
(--max-running). Part of the store: every function runs SQL inside the caller's transaction, so a
completion and everything it unblocks or dooms commit together, and nothing is ever polled.

Rule for dependencies: a job in state `waiting` counts its dependencies that have not succeeded yet
(`pending_deps`); each success decrements its dependents, and those reaching 0 are queued. A failed
or cancelled job cancels its waiting (or held) dependents, transitively, with a reason naming it.

Rule for --max-running N: a group holds N tokens. A job holds one while it is running or queued with
`throttled = 0`; only such queued jobs are in the leasing index. When a token frees up (a job finished,
was held or cancelled), the next throttled queued job of the group (priority, then age) takes it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from gridd.broker import transitions as tr
from gridd.broker.transitions import Transition
from gridd.protocol.errors import UnknownJob


def parse_job_id(job_id: str) -> int:
    """A job id as the database keys it; anything else is an unknown job."""
    if not job_id.isdigit() or len(job_id) > 18:
        raise UnknownJob(f"no job has id {job_id!r}")
    return int(job_id)


def parse_ref(ref: str) -> tuple[str, int]:
    """('job', id) or ('group', id) for a job id ("42") or a group id ("g7")."""
    kind, digits = ("group", ref[1:]) if ref.startswith("g") else ("job", ref)
    if not digits.isdigit() or len(digits) > 18:
        raise UnknownJob(f"no job or group has id {ref!r}")
    return kind, int(digits)


def group_name(group_id: int | None) -> str | None:
    return None if group_id is None else f"g{group_id}"


def ids_json(ids: Iterable[int]) -> str:
    return json.dumps(list(ids))


def rows(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    return db.execute(sql, params).fetchall()


def expand_refs(db: sqlite3.Connection, refs: Sequence[str]) -> list[tuple[str, int | None, str | None]]:
    """Each ref as (ref, job id or None if unknown, group name if it came from a group), in order;
    a group stands for all its jobs. Unknown ids are kept (job id None) for the caller to refuse."""
    out: list[tuple[str, int | None, str | None]] = []
    for ref in refs:
        try:
            kind, key = parse_ref(ref)
        except UnknownJob:
            out.append((ref, None, None))
            continue
        if kind == "job":
            out.append((ref, key, None))
            continue
        members = rows(db, "SELECT id FROM jobs WHERE group_id = ? ORDER BY id", (key,))
        if not members:
            out.append((ref, None, None))
        out.extend((str(m[0]), int(m[0]), ref) for m in members)
    return out


def dependency_states(db: sqlite3.Connection, refs: Sequence[str]) -> list[tuple[int, str]]:
    """The jobs named by --after (groups expanded) and their states; UnknownJob if one does not exist."""
    expanded = expand_refs(db, refs)
    for ref, key, _ in expanded:
        if key is None:
            raise UnknownJob(f"cannot wait for {ref!r}: no job or group has that id")
    keys = sorted({key for _, key, _ in expanded if key is not None})
    found = dict(rows(db, "SELECT id, state FROM jobs WHERE id IN (SELECT value FROM json_each(?))", (ids_json(keys),)))
    for key in keys:
        if key not in found:
            raise UnknownJob(f"cannot wait for {key}: no job has that id")
    return [(key, str(found[key])) for key in keys]


def doom_reason(dep_id: int, dep_state: str) -> str:
    verb = "failed" if dep_state == tr.FAILED else "was cancelled"
    return f"dependency {dep_id} {verb}"


def settle(db: sqlite3.Connection, changed: Sequence[Transition], now_ms: int) -> list[Transition]:
    """What `changed` sets off: dependents queued or cancelled, group tokens passed on."""
    extra = _unblock(db, [int(t.job_id) for t in changed if t.state == tr.SUCCEEDED])
    extra += _doom(
        db, [(int(t.job_id), t.state) for t in [*changed, *extra] if t.state in (tr.FAILED, tr.CANCELLED)], now_ms
    )
    rebalance(db, [int(t.job_id) for t in [*changed, *extra]])
    return extra


def _unblock(db: sqlite3.Connection, succeeded: list[int]) -> list[Transition]:
    if not succeeded:
        return []
    updated = rows(
        db,
        "UPDATE jobs SET pending_deps = pending_deps - (SELECT COUNT(*) FROM deps d WHERE d.job_id = jobs.id"
        " AND d.dep_id IN (SELECT value FROM json_each(?1)))"
        " WHERE id IN (SELECT job_id FROM deps WHERE dep_id IN (SELECT value FROM json_each(?1)))"
        " RETURNING id, state, pending_deps",
        (ids_json(succeeded),),
    )
    ready = [int(r[0]) for r in updated if r[1] == tr.WAITING and r[2] == 0]
    if not ready:
        return []
    queued = rows(
        db,
        "UPDATE jobs SET state = 'queued', throttled = (SELECT COUNT(*) FROM groups g WHERE g.id = jobs.group_id"
        " AND g.max_running IS NOT NULL) WHERE id IN (SELECT value FROM json_each(?)) AND state = 'waiting'"
        " RETURNING id, queue, attempts",
        (ids_json(ready),),
    )
    return [
        Transition(str(r[0]), tr.QUEUED, str(r[1]), int(r[2]), reason="dependencies succeeded", previous=tr.WAITING)
        for r in queued
    ]


def _doom(db: sqlite3.Connection, ended: list[tuple[int, str]], now_ms: int) -> list[Transition]:
    """Cancel the waiting or held dependents of jobs that will never succeed, transitively."""
    doomed: list[Transition] = []
    frontier = dict(ended)
    while frontier:
        found = rows(
            db,
            "SELECT d.dep_id, j.id, j.state, j.queue, j.attempts FROM deps d JOIN jobs j ON j.id = d.job_id"
            " WHERE d.dep_id IN (SELECT value FROM json_each(?)) AND j.state IN ('waiting', 'held')",
            (ids_json(frontier),),
        )
        victims: dict[int, tuple[str, str, str, int]] = {}
        for dep_id, job_id, state, queue, attempts in found:
            reason = doom_reason(dep_id, frontier[int(dep_id)])
            victims.setdefault(int(job_id), (str(state), reason, str(queue), int(attempts)))
        db.executemany(
            "UPDATE jobs SET state = 'cancelled', finished_ms = ?, reason = ? WHERE id = ? AND state = ?",
            [(now_ms, reason, job_id, state) for job_id, (state, reason, _, _) in victims.items()],
        )
        doomed += [
            Transition(str(job_id), tr.CANCELLED, queue, attempts, reason=reason, previous=state)
            for job_id, (state, reason, queue, attempts) in victims.items()
        ]
        frontier = dict.fromkeys(victims, tr.CANCELLED)
    return doomed


def rebalance(db: sqlite3.Connection, job_ids: Sequence[int]) -> None:
    """Give the free tokens of these jobs' capped groups to their next throttled queued jobs."""
    if not job_ids:
        return
    groups = rows(
        db,
        "SELECT DISTINCT g.id, g.max_running FROM jobs j JOIN groups g ON g.id = j.group_id"
        " WHERE j.id IN (SELECT value FROM json_each(?)) AND g.max_running IS NOT NULL",
        (ids_json(job_ids),),
    )
    for group_id, max_running in groups:
        held = rows(
            db,
            "SELECT COUNT(*) FROM jobs WHERE group_id = ?1 AND (state = 'running'"
            " OR (state = 'queued' AND throttled = 0))",
            (group_id,),
        )
        free = int(max_running) - int(held[0][0])
        if free > 0:
            db.execute(
                "UPDATE jobs SET throttled = 0 WHERE id IN (SELECT id FROM jobs WHERE group_id = ?"
                " AND state = 'queued' AND throttled = 1 ORDER BY priority DESC, id LIMIT ?)",
                (group_id, free),
            )

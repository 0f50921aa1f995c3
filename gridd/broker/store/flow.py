"""The store's rules for jobs that depend on others (--after) and for groups run N at a time
(--max-running). Part of the store: every function runs SQL inside the caller's transaction, so a
completion and everything it unblocks or dooms commit together, and nothing is ever polled.

Rule for dependencies: a job in state `waiting` counts its dependencies that have not succeeded yet
(`pending_deps`); each success decrements its dependents, and those reaching 0 are queued. A failed
or cancelled job cancels its waiting (or held) dependents, transitively, with a reason naming it.

Rule for --max-running N: a group holds N tokens. A job holds one while it is running or queued with
`throttled = 0`; only such queued jobs are in the leasing index. When a token frees up (a job finished,
was held or cancelled), the next throttled queued job of the group (priority, then age) takes it.

Several brokers on one database decide one after the other: what is read to decide is locked until the
decision commits (a submit's dependencies, the dependents a failure dooms, a capped group while its free
tokens are counted and passed on), so two completions at once never both cancel a job, nor leave a token
unpassed because each counted the other's job as still running.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from gridd.broker import transitions as tr
from gridd.broker.store.refs import expand_refs
from gridd.broker.store.sql import FOR_UPDATE, Fragment, Tx, rows, state, states
from gridd.broker.transitions import Move, Transition
from gridd.protocol.errors import UnknownJob
from gridd.protocol.states import JobState

# A dependency that ends in one of these never succeeds: its dependents are doomed.
DOOMING = (JobState.FAILED, JobState.CANCELLED)
_WAITING, _UNBLOCKED = tr.edge(Move.DEPS_MET)
# A job going back to the queue of a capped group (--max-running) queues throttled, and waits for a token.
THROTTLED = "(SELECT COUNT(*) FROM groups g WHERE g.id = jobs.group_id AND g.max_running IS NOT NULL)"
_UNBLOCK_SQL = (
    f"UPDATE jobs SET state = {state(_UNBLOCKED)}, throttled = {THROTTLED}"  # noqa: S608
    f" WHERE id IN (SELECT value FROM json_each(?)) AND state = {state(_WAITING)} RETURNING id, queue, attempts"
)
# The dependents locked in the order of their ids (not the deps rows), so that two brokers dooming one job at
# once cancel it once (SQLite's rows stay unsorted: its transactions never interleave).
_BY_ID_FOR_UPDATE_OF_JOBS = Fragment(" /* by id, for update of j */", " ORDER BY j.id FOR UPDATE OF j")
# From the deps rows of the ended jobs to their dependents (CROSS JOIN keeps SQLite to that order): SQLite's
# planner, without statistics, read every waiting, held and scheduled job instead, and probed its deps: 23 ms
# a step with 100,000 jobs waiting (12 µs this way), at each step down a chain of dependents being cancelled.
_DOOMED_SQL = (
    "SELECT d.dep_id, j.id, j.state, j.queue, j.attempts FROM deps d CROSS JOIN jobs j"  # noqa: S608
    " WHERE j.id = d.job_id AND d.dep_id IN (SELECT value FROM json_each(?))"
    f" AND j.state IN {states(sorted(tr.sources(Move.DEP_LOST)))}"
    f"{_BY_ID_FOR_UPDATE_OF_JOBS}"
)
# A group's tokens are held by its running jobs and its queued jobs that are not throttled: two ranges of
# jobs_group, each counted apart (with OR, SQLite read every entry of the group: 11.7 ms a completion with
# 100,000 jobs in it, against microseconds).
_TOKENS_HELD_SQL = (
    f"SELECT (SELECT COUNT(*) FROM jobs WHERE group_id = ? AND state = {state(JobState.RUNNING)})"  # noqa: S608
    f" + (SELECT COUNT(*) FROM jobs WHERE group_id = ? AND state = {state(JobState.QUEUED)} AND throttled = 0)"
)
_DEPENDENCIES_SQL = f"SELECT id, state FROM jobs WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id{FOR_UPDATE}"  # noqa: S608
# The capped groups of some jobs, locked while their free tokens are counted and passed on: two brokers
# freeing tokens of one group at once count them one after the other, each seeing what the other did.
_CAPPED_GROUPS_SQL = (
    "SELECT id, max_running FROM groups WHERE id IN (SELECT group_id FROM jobs"  # noqa: S608
    f" WHERE id IN (SELECT value FROM json_each(?))) AND max_running IS NOT NULL ORDER BY id{FOR_UPDATE}"
)
_PASS_TOKENS_SQL = (
    "UPDATE jobs SET throttled = 0 WHERE id IN (SELECT id FROM jobs WHERE group_id = ?"  # noqa: S608
    f" AND state = {state(JobState.QUEUED)} AND throttled = 1 ORDER BY priority DESC, id LIMIT ?)"
)


def dependency_states(db: Tx, refs: Sequence[str]) -> list[tuple[int, str]]:
    """The jobs named by --after (groups expanded) and their states; UnknownJob if one does not exist."""
    expanded = expand_refs(db, refs)
    for ref, key, _ in expanded:
        if key is None:
            raise UnknownJob(f"cannot wait for {ref!r}: no job or group has that id")
    keys = sorted({key for _, key, _ in expanded if key is not None})
    # Locked until the submit commits: a dependency that ends meanwhile (through another broker) waits for
    # it, and then finds the new dependents among its own (or this read finds it ended).
    found = dict(rows(db, _DEPENDENCIES_SQL, (db.ids(keys),)))
    for key in keys:
        if key not in found:
            raise UnknownJob(f"cannot wait for {key}: no job has that id")
    return [(key, str(found[key])) for key in keys]


def doom_reason(dep_id: int, dep_state: str) -> str:
    return f"dependency {dep_id} {tr.ended_as(dep_state)}"


def settle(
    db: Tx, changed: Sequence[Transition], now_ms: int, uncapped: Collection[int] = frozenset()
) -> list[Transition]:
    """What `changed` sets off: dependents queued or cancelled, group tokens passed on. `uncapped`: jobs of
    `changed` known to be in no capped group (their group's cap is set when it is made, for good), which
    free no token."""
    extra = _unblock(db, [int(t.job_id) for t in changed if t.state == JobState.SUCCEEDED])
    extra += _doom(db, [(int(t.job_id), t.state) for t in [*changed, *extra] if t.state in DOOMING], now_ms)
    rebalance(db, [job_id for t in [*changed, *extra] if (job_id := int(t.job_id)) not in uncapped])
    return extra


def _unblock(db: Tx, succeeded: list[int]) -> list[Transition]:
    if not succeeded:
        return []
    updated = rows(
        db,
        "UPDATE jobs SET pending_deps = pending_deps - (SELECT COUNT(*) FROM deps d WHERE d.job_id = jobs.id"
        " AND d.dep_id IN (SELECT value FROM json_each(?)))"
        " WHERE id IN (SELECT job_id FROM deps WHERE dep_id IN (SELECT value FROM json_each(?)))"
        " RETURNING id, state, pending_deps",
        (db.ids(succeeded), db.ids(succeeded)),
    )
    ready = [int(r[0]) for r in updated if r[1] == _WAITING and r[2] == 0]
    if not ready:
        return []
    queued = rows(db, _UNBLOCK_SQL, (db.ids(ready),))
    return [
        Transition(str(r[0]), _UNBLOCKED, str(r[1]), int(r[2]), reason="dependencies succeeded", previous=_WAITING)
        for r in queued
    ]


def _doom(db: Tx, ended: list[tuple[int, str]], now_ms: int) -> list[Transition]:
    """Cancel the waiting or held dependents of jobs that will never succeed, transitively."""
    doomed: list[Transition] = []
    frontier = dict(ended)
    while frontier:
        found = rows(db, _DOOMED_SQL, (db.ids(frontier),))
        victims: dict[int, tuple[str, str, str, int]] = {}
        for dep_id, job_id, was, queue, attempts in found:
            reason = doom_reason(dep_id, frontier[int(dep_id)])
            victims.setdefault(int(job_id), (str(was), reason, str(queue), int(attempts)))
        moved = {job_id: tr.step(was, Move.DEP_LOST) for job_id, (was, _, _, _) in victims.items()}
        db.executemany(
            "UPDATE jobs SET state = ?, finished_ms = ?, reason = ? WHERE id = ? AND state = ?",
            [(moved[job_id], now_ms, reason, job_id, was) for job_id, (was, reason, _, _) in victims.items()],
        )
        doomed += [
            Transition(str(job_id), moved[job_id], queue, attempts, reason=reason, previous=was)
            for job_id, (was, reason, queue, attempts) in victims.items()
        ]
        frontier = {job_id: str(moved[job_id]) for job_id in victims}
    return doomed


def rebalance(db: Tx, job_ids: Sequence[int]) -> None:
    """Give the free tokens of these jobs' capped groups to their next throttled queued jobs."""
    if not job_ids:
        return
    groups = rows(db, _CAPPED_GROUPS_SQL, (db.ids(job_ids),))
    for group_id, max_running in groups:
        held = rows(db, _TOKENS_HELD_SQL, (group_id, group_id))
        free = int(max_running) - int(held[0][0])
        if free > 0:
            db.execute(_PASS_TOKENS_SQL, (group_id, free))

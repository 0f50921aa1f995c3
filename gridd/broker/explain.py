"""Why a job is where it is (`gridd why`): the job's own causes (held, dependencies, its group's
--max-running, a retry delay), each connected worker's first obstacle (matching.blocker), the one reason
that comes first, and what would make the job run. Computed from the workers the broker holds in memory and
one store read (Store.job_facts); nothing here does I/O.

The one reason, in this order: the job's state if it is running or finished; held; scheduled to start
later (submit --at/--in); waiting for dependencies; its group at --max-running; a retry delay; no
connected worker could ever run it (matching.unmatched, the same words `show` uses, also listed among the
causes of a job held back by its own); every worker that could is busy or taken back; else a worker may
take it at its next lease request."""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec

from gridd.broker import transitions as tr
from gridd.broker.gangs import gang_wait
from gridd.broker.matching import NEVER, blocker, unmatched
from gridd.broker.store.interface import JobFacts
from gridd.broker.workers import WorkerLink
from gridd.protocol.messages import JobExplained, JobView, WorkerFit
from gridd.protocol.retries import POISON_WORKERS


def explain(facts: JobFacts, workers: Sequence[WorkerLink], now_ms: int) -> JobExplained:
    """The reply to ExplainJob (rid 0: the session sets it); `workers`: the connected ones, by name."""
    job = facts.job
    base = JobExplained(
        rid=0,
        job=job,
        attempts=facts.attempts,
        reason="",
        dependencies=facts.dependencies,
        not_before_ms=facts.not_before_ms or None,
    )
    if job.state == tr.RUNNING:
        where = f"running on {job.worker or 'a worker'}, attempt {job.attempts} of {job.max_attempts}"
        return _with(base, reason=where)
    if job.state in tr.FINISHED:
        how = job.state + (f" with exit code {job.exit_code}" if job.exit_code is not None else "")
        how += f" on {job.worker}" if job.worker else ""
        how += f": {job.reason}" if job.reason else ""
        remedy = f"gridd retry {job.id}" if job.state in (tr.FAILED, tr.CANCELLED) else None
        if job.poison:  # retry_policy.py: the same status on 3 workers; another worker would not help
            same = f"it failed the same way on {POISON_WORKERS} workers"
            remedy = f"{same}; mend the command or its input, then gridd retry {job.id}"
            return _with(base, reason=how, remedy=remedy)
        return _with(base, reason=how, remedy=remedy and f"it has finished; {remedy} runs it again")
    fits = [(w, blocker(job, w, facts.sizes)) for w in workers]
    views = [WorkerFit(worker=w.name, state=w.state, blocker=b[1] if b else None) for w, b in fits]
    causes, remedy = _own_causes(facts, now_ms)
    # Held or waiting, it is not queued yet; whether any worker could ever run it once it is, is said too.
    never = unmatched(job if job.state == tr.QUEUED else msgspec.structs.replace(job, state=tr.QUEUED), workers)
    if causes:
        causes += [never] if never is not None else []
        return _with(base, reason=causes[0], causes=causes, workers=views, remedy=remedy)
    if never is not None:
        return _with(base, reason=never, workers=views, remedy=_never_remedy(job, fits))
    if (short := gang_wait(job, fits)) is not None:  # a gang needs that many workers at once
        return _with(base, reason=short[0], workers=views, remedy=short[1])
    free = [w.name for w, b in fits if b is None]
    if free:
        reason = f"queued: {_names(free)} may take it at {'its' if len(free) == 1 else 'their'} next lease request"
        return _with(base, reason=reason + " (jobs of higher priority in its queue go first)", workers=views)
    waiting = [(w.name, b) for w, b in fits if b is not None and b[0] not in NEVER]
    reason = "queued: every worker that could run it is busy or taken back by its owner"
    remedy = "it starts when one of these frees up: " + "; ".join(f"{n} ({b[1]})" for n, b in waiting)
    return _with(base, reason=reason, workers=views, remedy=remedy)


def _own_causes(facts: JobFacts, now_ms: int) -> tuple[list[str], str | None]:
    """What keeps the job itself from running, whatever the workers, and what lifts the first of them."""
    job = facts.job
    causes: list[tuple[str, str]] = []
    start = job.start_at_ms if job.start_at_ms is not None and job.start_at_ms > now_ms else None
    if job.state == tr.HELD:
        then = f" (then it waits for its start time, {_at(start, now_ms)})" if start is not None else ""
        causes.append((f"held: it does not start until released{then}", f"gridd release {job.id}"))
    if job.state == tr.SCHEDULED:
        causes.append(
            (
                f"scheduled to start at {_at(job.start_at_ms or now_ms, now_ms)}",
                f"its start time coming, or gridd release {job.id} to run it now",
            )
        )
    pending = [d for d in facts.dependencies if d.state != tr.SUCCEEDED]
    if job.state in (tr.WAITING, tr.SCHEDULED) and pending:  # a scheduled one: after its start time
        deps = ", ".join(f"{d.id} ({d.state})" for d in pending)
        causes.append(
            (
                f"waiting for {len(pending)} dependenc{'y' if len(pending) == 1 else 'ies'} to succeed: {deps}",
                "its dependencies succeeding (one that fails or is cancelled cancels it)",
            )
        )
    if job.state == tr.QUEUED and facts.throttled and facts.max_running is not None:
        named = ", ".join(facts.group_running)
        extra = facts.group_running_count - len(facts.group_running)
        more = f" and {extra} more" if extra > 0 else ""
        running = f": {facts.group_running_count} running ({named}{more})" if named else ""
        causes.append(
            (
                f"its group {job.group} is at --max-running {facts.max_running}{running}",
                f"one of the running jobs of group {job.group} finishing",
            )
        )
    if job.state == tr.QUEUED and facts.not_before_ms > now_ms:
        wait_s = -(-(facts.not_before_ms - now_ms) // 1000)
        causes.append(
            (
                f"retry delay: attempt {job.attempts} of {job.max_attempts} failed; it may start again in {wait_s}s",
                f"time: in {wait_s}s it may be leased again",
            )
        )
    return [c for c, _ in causes], (causes[0][1] if causes else None)


def _never_remedy(job: JobView, fits: Sequence[tuple[WorkerLink, tuple[str, str] | None]]) -> str:
    """What would let some worker run a job none could: lift the obstacle of the worker that comes closest."""
    furthest = max((NEVER.index(b[0]) for _, b in fits if b is not None and b[0] in NEVER), default=0)
    kind = NEVER[furthest] if fits else "queue"
    if kind in ("credential", "queue"):
        return (
            f"a worker serving queue {job.queue!r} (gridd worker --queue {job.queue}, with a credential that allows it)"
        )
    if kind == "module":
        module = (job.task or "").partition(":")[0]
        return f"a worker serving queue {job.queue!r} that runs module {module!r} (gridd worker --tasks {module})"
    if kind == "tag":
        tags = " ".join(f"--tag {k}={v}" for k, v in sorted(job.requires.items()))
        return f"a worker serving queue {job.queue!r} with its tags (gridd worker {tags})"
    return f"a worker with at least {job.cpus} cpus and {job.memory_mb} MiB of memory serving queue {job.queue!r}"


def _at(ms: int, now_ms: int) -> str:
    """A start time as the broker tells it: in UTC (the reader's zone is not known here), and how far off."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))
    left_s = max(0, -(-(ms - now_ms) // 1000))
    days, rest = divmod(left_s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    return f"{stamp}, in {''.join(parts[:2]) or '0s'}"


def _names(names: Sequence[str]) -> str:
    return ", ".join(names)


def _with(base: JobExplained, **fields: object) -> JobExplained:
    return msgspec.structs.replace(base, **fields)

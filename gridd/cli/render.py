"""How jobs, workers and events look to a person (tables) and to a script (--json); status's: render_status.py."""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from gridd.cli.render_status import to_json as to_json  # every command's JSON: render.to_json
from gridd.printable import printable
from gridd.protocol.records import AttemptView, JobView, ReportRow, WorkerView
from gridd.protocol.retries import BACKOFF_CAP_S, POISON_WORKERS
from gridd.protocol.states import FINISHED, JobState
from gridd.resources import format_mb
from gridd.tui import formatting

if TYPE_CHECKING:  # annotations only: `gridd status` and `show` import no other command's messages
    from gridd.protocol.job_messages import JobExplained
    from gridd.protocol.stream_messages import Event


def job_record(job: JobView) -> dict[str, Any]:
    """The `show --json` object: JobView's fields plus a shell-quoted command."""
    record = msgspec.structs.asdict(job)
    record["command"] = shlex.join(job.argv)
    return record


def shown_record(job: JobView, attempts: Sequence[AttemptView]) -> dict[str, Any]:
    """The `show --json` object: the job's record and, under `history` (`attempts` is their count), its
    finished attempts with their formatting."""
    record = job_record(job)
    record["history"] = [msgspec.structs.asdict(a) for a in attempts]
    return record


def show(job: JobView, attempts: Sequence[AttemptView]) -> str:
    rows = [
        ("id", job.id),
        ("state", job.state),
        ("command", shlex.join(job.argv)),
        ("queue", job.queue),
        ("owner", job.owner or "-"),
        ("priority", str(job.priority)),
        ("attempts", f"{job.attempts} of {job.max_attempts}"),
        ("exit code", "-" if job.exit_code is None else str(job.exit_code)),
        ("worker", job.worker or "-"),
        ("submitted", _when(job.submitted_ms)),
        ("started", _when(job.started_ms)),
        ("finished", _when(job.finished_ms)),
        ("timeout", f"{job.timeout_s:g}s" if job.timeout_s else "-"),
        ("output", f"{job.stdout_bytes} bytes stdout, {job.stderr_bytes} bytes stderr"),
    ]
    if job.start_at_ms is not None:
        rows.append(("start at", _start(job)))
    if job.group:
        rows.append(("group", job.group))
    if job.bundle:
        rows.append(("bundle", job.bundle))
    if job.after:
        rows.append(("after", " ".join(job.after)))
    if job.reason:
        rows.append(("reason", job.reason))
    if job.cpus != 1 or job.memory_mb or job.requires:
        asks = [f"{job.cpus} cpu{'s' if job.cpus != 1 else ''}"] + ([format_mb(job.memory_mb)] if job.memory_mb else [])
        rows.append(("needs", " ".join(asks + [f"{k}={v}" for k, v in sorted(job.requires.items())])))
    if job.unmatched:
        rows.append(("unmatched", job.unmatched))
    rows += _retry_rows(job)
    if job.schedule:
        rows.append(("schedule", job.schedule))
    if job.gang:
        rows.append(("gang", f"{job.gang} members, on {job.gang} distinct workers at once"))
    width = max(len(k) for k, _ in rows)
    text = "\n".join(f"{k:<{width}}  {printable(v)}" for k, v in rows)
    if attempts:
        code = any(a.code for a in attempts)  # task jobs: the version of the code each attempt ran
        bundle = any(a.bundle for a in attempts)  # the bundle version each attempt ran in
        table = [
            ["ATTEMPT", "WORKER", "OUTCOME", "EXIT", "ENDED", "WALL", "CPU", "MAXRSS", "OUTPUT"]
            + (["CODE"] if code else [])
            + (["BUNDLE"] if bundle else [])
        ] + [
            [
                str(a.attempt),
                a.worker or "-",
                a.outcome,
                "-" if a.exit_code is None else str(a.exit_code),
                _when(a.ended_ms),
                formatting.duration(None if a.wall_ms is None else a.wall_ms / 1000),
                formatting.duration(formatting.cpu_s(a)),
                formatting.kib(a.max_rss_kb),
                "-" if a.output_bytes is None else f"{a.output_bytes}B",
            ]
            + ([a.code or "-"] if code else [])
            + ([a.bundle or "-"] if bundle else [])
            for a in attempts
        ]
        text += "\n\n" + _table(table)
    return text


def _retry_rows(job: JobView) -> list[tuple[str, str]]:
    """What `show` says of a job's retry policy (when it has one of its own) and of its poison."""
    rows = [("retry on", ",".join(job.retry_on))] if job.retry_on else []
    delay = job.retry_delay_s
    if delay is not None and delay < BACKOFF_CAP_S:
        rows.append(("retry delay", f"{delay:g}s, doubling each retry up to {BACKOFF_CAP_S:g}s"))
    elif delay is not None:
        rows.append(("retry delay", f"{delay:g}s before each retry"))
    if job.poison:
        rows.append(
            ("poison", f"yes: it failed the same way on {POISON_WORKERS} workers; gridd retry {job.id} runs it again")
        )
    return rows


def report(rows: Sequence[ReportRow], by: str) -> str:
    """`gridd report`: one line per group, then the total."""
    if not rows:
        return "no attempt ended in that time"
    header = [by.upper(), "JOBS", "OK", "ATTEMPTS", "CPU-H", "WALL-H", "LENT", "LENT CPU-H", "LENT WALL-H"]
    total = ReportRow(
        group="total",
        jobs=sum(r.jobs for r in rows),
        succeeded=sum(r.succeeded for r in rows),
        attempts=sum(r.attempts for r in rows),
        cpu_hours=sum(r.cpu_hours for r in rows),
        wall_hours=sum(r.wall_hours for r in rows),
        lent_attempts=sum(r.lent_attempts for r in rows),
        lent_cpu_hours=sum(r.lent_cpu_hours for r in rows),
        lent_wall_hours=sum(r.lent_wall_hours for r in rows),
    )
    lines = [
        [
            r.group,
            str(r.jobs),
            str(r.succeeded),
            str(r.attempts),
            f"{r.cpu_hours:.3f}",
            f"{r.wall_hours:.3f}",
            str(r.lent_attempts),
            f"{r.lent_cpu_hours:.3f}",
            f"{r.lent_wall_hours:.3f}",
        ]
        for r in [*rows, total]
    ]
    return _table([header, *lines])


def why_record(e: JobExplained) -> dict[str, Any]:
    """The `why --json` object: the reply without its request id, the job as `show --json` has it."""
    record = msgspec.to_builtins(e)
    for key in ("op", "rid"):
        record.pop(key, None)
    record["job"] = job_record(e.job)
    return dict(record)


def why(e: JobExplained) -> str:
    """The one reason first; then the job's other causes, what it waits for, each worker's obstacle, what
    would make it run, and its attempts."""
    job = e.job
    lines = [f"job {job.id} ({job.state}): {e.reason}"]
    lines += [f"  also: {cause}" for cause in e.causes[1:]]
    if e.dependencies:
        lines.append("after: " + ", ".join(f"{d.id} ({d.state})" for d in e.dependencies))
    if e.not_before_ms and job.state == JobState.QUEUED:
        lines.append(f"not before: {_when(e.not_before_ms)}")
    if job.start_at_ms is not None and job.state in (JobState.SCHEDULED, JobState.HELD):
        lines.append(f"start at: {_start(job)}")
    if job.state == JobState.RUNNING:
        lines.append(f"since: {_when(job.started_ms)}")
    elif job.finished_ms is not None:
        lines.append(f"finished: {_when(job.finished_ms)}")
    if e.remedy:
        lines.append(f"to run: {e.remedy}")
    text = "\n".join(printable(line) for line in lines)
    if e.workers:
        rows = [["WORKER", "STATE", "WHY NOT"]]
        rows += [[w.worker, w.state, w.blocker or "it may take it now"] for w in e.workers]
        text += "\n\n" + _table(rows)
    elif job.state != JobState.RUNNING and job.state not in FINISHED:
        text += "\n\nno worker is connected"
    if e.attempts:
        rows = [["ATTEMPT", "WORKER", "OUTCOME", "EXIT", "STARTED", "ENDED"]]
        rows += [
            [
                str(a.attempt),
                a.worker or "-",
                a.outcome,
                "-" if a.exit_code is None else str(a.exit_code),
                _when(a.started_ms),
                _when(a.ended_ms),
            ]
            for a in e.attempts
        ]
        text += "\n\n" + _table(rows)
    return text


def jobs(views: Sequence[JobView]) -> str:
    now = time.time() * 1000
    rows = [["ID", "STATE", "QUEUE", "OWNER", "PRI", "TRIES", "EXIT", "WORKER", "AGE", "COMMAND"]]
    for j in views:
        rows.append(
            [
                j.id,
                j.state,
                j.queue,
                j.owner or "-",
                str(j.priority),
                f"{j.attempts}/{j.max_attempts}",
                "-" if j.exit_code is None else str(j.exit_code),
                j.worker or "-",
                _age(now - j.submitted_ms),
                _clip(shlex.join(j.argv), 60),
            ]
        )
    return _table(rows)


def workers(views: Sequence[WorkerView]) -> str:
    now = time.time() * 1000
    rows = [["NAME", "HOST", "STATE", "SLOTS", "RUNNING", "CPUS", "MEMORY", "QUEUES", "UP", "JOBS"]]
    for w in views:
        rows.append(
            [
                w.name,
                w.host,
                w.state,
                str(w.slots),
                str(w.running),
                "-" if w.cpus is None else str(w.cpus),
                format_mb(w.memory_mb),
                ",".join(w.queues),
                _age(now - w.connected_ms),
                _clip(" ".join(w.jobs), 40) or "-",
            ]
        )
    return _table(rows)


def event_line(e: Event) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(e.ts_ms / 1000)) + f".{e.ts_ms % 1000:03d}"
    parts = [stamp, e.kind]
    for key, value in (
        ("job", e.job_id),
        ("worker", e.worker),
        ("queue", e.queue),
        ("attempt", e.attempt),
        ("exit", e.exit_code),
        ("state", e.state if e.kind == "worker.state" else None),
    ):
        if value is not None:
            parts.append(f"{key}={value}")
    if e.message:
        parts.append(f"({e.message})")
    return printable(" ".join(parts))


def table(rows: list[list[str]]) -> str:
    """Columns padded to their widest cell; the first row is the header."""
    return _table(rows)


def _table(rows: list[list[str]]) -> str:
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def _start(job: JobView) -> str:
    """A job's start time (submit --at/--in), in local time, and how far off while it is ahead."""
    ms = job.start_at_ms or 0
    ahead = ms - time.time() * 1000
    return _when(ms) + (f" (in {_age(ahead)})" if ahead > 0 and job.state not in FINISHED else "")


def _age(ms: float) -> str:
    s = max(0, int(ms / 1000))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"

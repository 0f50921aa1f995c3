"""The workers as the dashboard shows them, kept from a snapshot plus events.

Rule: events say which worker started a job and when a job stopped running, and when a worker's state
changed (its owner took the machine back, it suspended its jobs), so each worker's running jobs and state
follow the stream exactly. Events do not carry a worker's slots or its heartbeats: a joining
worker makes the board ask for a refresh (`needs_refresh`), and the dashboard re-reads the (small)
worker list now and then so that "last seen" reflects heartbeats too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gridd.protocol.messages import Event, WorkerView
from gridd.protocol.states import JobState


@dataclass(slots=True)
class WorkerRow:
    """One worker: what the workers table shows."""

    name: str
    host: str
    slots: int
    jobs: set[str] = field(default_factory=set)
    last_seen_ms: int = 0
    reported: str = "available"  # the state the worker reports (messages.WORKER_STATES)

    @property
    def state(self) -> str:
        """What the worker reports when its machine is not the grid's now (suspended, owner-busy,
        outside-window, draining); else busy while it runs a job, idle while it runs none."""
        if self.reported not in ("available", "idle"):
            return self.reported
        return "busy" if self.jobs else "idle"

    def sorted_jobs(self) -> list[str]:
        """Its running job ids, oldest first."""
        return sorted(self.jobs, key=lambda j: (len(j), j))


class WorkerBoard:
    """Connected workers by name."""

    def __init__(self) -> None:
        self.rows: dict[str, WorkerRow] = {}
        self.needs_refresh = False

    def reset(self, views: Iterable[WorkerView]) -> None:
        """Replace everything with the broker's list (a snapshot or a `workers()` reply)."""
        self.rows = {
            v.name: WorkerRow(v.name, v.host, v.slots, set(v.jobs), v.last_seen_ms, v.state)
            for v in views
            if v.connected
        }
        self.needs_refresh = False

    def running_jobs(self) -> list[str]:
        """Every job id some worker runs now."""
        return [job for row in self.rows.values() for job in row.jobs]

    def apply(self, event: Event) -> bool:
        """Apply one event; True if a row changed."""
        if event.kind == "worker.joined" and event.worker:
            self.rows[event.worker] = WorkerRow(event.worker, event.message or "", 0, last_seen_ms=event.ts_ms)
            self.needs_refresh = True  # its slots are not in the event
            return True
        if event.kind == "worker.left" and event.worker:
            return self.rows.pop(event.worker, None) is not None
        if event.kind == "worker.state" and event.worker in self.rows and event.state:
            self.rows[event.worker].reported = event.state
            return True
        changed = self._seen(event.worker, event.ts_ms)
        if event.job_id is not None and event.state is not None:
            changed = self._move_job(event.job_id, event.worker if event.state == JobState.RUNNING else None) or changed
        return changed

    def _seen(self, worker: str | None, ts_ms: int) -> bool:
        row = self.rows.get(worker) if worker else None
        if row is None or ts_ms <= row.last_seen_ms:
            return False
        row.last_seen_ms = ts_ms
        return True

    def _move_job(self, job_id: str, runner: str | None) -> bool:
        """The job now runs on `runner` (None: nowhere)."""
        changed = False
        for row in self.rows.values():
            if row.name != runner and job_id in row.jobs:
                row.jobs.discard(job_id)
                changed = True
        target = self.rows.get(runner) if runner else None
        if target is not None and job_id not in target.jobs:
            target.jobs.add(job_id)
            changed = True
        return changed

    def slots(self) -> tuple[int, int]:
        """(slots in use, slots in all) over every worker."""
        return sum(len(r.jobs) for r in self.rows.values()), sum(r.slots for r in self.rows.values())

"""Typed messages the dashboard's workers post to its widgets.

Rule: messages carry data only. Those that come in bursts (events, reloads) implement `can_replace`,
which Textual asks of a pending message when a newer one of the same kind is queued behind it.
"""

from __future__ import annotations

from textual.message import Message

from gridd.protocol.messages import AttemptView, Event, JobView, Subscribed, WorkerView


class Connected(Message):
    """Subscribed to the broker at `address`: `snapshot` is the grid the following events apply to."""

    def __init__(self, address: str, snapshot: Subscribed) -> None:
        super().__init__()
        self.address = address
        self.snapshot = snapshot


class Disconnected(Message):
    """The connection is gone (`reason`); the next attempt starts in `retry_in_s` seconds."""

    def __init__(self, address: str, reason: str, retry_in_s: float) -> None:
        super().__init__()
        self.address = address
        self.reason = reason
        self.retry_in_s = retry_in_s

    def can_replace(self, message: Message) -> bool:
        """A newer attempt's news supersedes an older one."""
        return isinstance(message, Disconnected)


class EventsArrived(Message):
    """Events from the stream, in order. Queued batches merge, so a slow screen catches up in one go."""

    def __init__(self, events: list[Event]) -> None:
        super().__init__()
        self.events = events

    def can_replace(self, message: Message) -> bool:
        """Fold this batch into the newer one behind it (in place: merging stays linear in events)."""
        if not isinstance(message, EventsArrived):
            return False
        self.events.extend(message.events)
        message.events = self.events
        return True


class WorkersLoaded(Message):
    """The broker's current list of workers."""

    def __init__(self, workers: list[WorkerView]) -> None:
        super().__init__()
        self.workers = workers

    def can_replace(self, message: Message) -> bool:
        """Only the newest list matters."""
        return isinstance(message, WorkersLoaded)


class JobsLoaded(Message):
    """A page of jobs, newest first, for the jobs table (`mode`: reload, top or older); `ok` is False
    when the read failed (the table only clears its in-flight mark then)."""

    def __init__(self, generation: int, mode: str, jobs: list[JobView], limit: int, *, ok: bool = True) -> None:
        super().__init__()
        self.generation = generation
        self.mode = mode
        self.jobs = jobs
        self.limit = limit
        self.ok = ok


class JobDetailLoaded(Message):
    """One job, its finished attempts and the tails of its output."""

    def __init__(self, job: JobView, attempts: list[AttemptView], stdout: str, stderr: str) -> None:
        super().__init__()
        self.job = job
        self.attempts = attempts
        self.stdout = stdout
        self.stderr = stderr

    def can_replace(self, message: Message) -> bool:
        """Only the newest reading matters."""
        return isinstance(message, JobDetailLoaded)

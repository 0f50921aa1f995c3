"""Jobs per queue and state, kept exact from one snapshot plus the events after it.

Rule: an event names a job's new state but not its previous one. The previous state comes, in order,
from what this book saw of the job since the snapshot, from the event kind when only one transition
leads to it, or from the counts themselves when only one candidate state is non-zero in that queue.
When none of these settles it (a `cancel` of a job this dashboard never saw, while the queue has both
queued and held jobs), the book says it is no longer exact and the dashboard takes a fresh snapshot
(at most once per resync interval). We chose this over re-reading `status()`: status has totals by
state but not by queue, and a fresh snapshot is exact by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gridd.protocol.messages import Event
from gridd.protocol.states import JobState

# The only state a job can come from, for event kinds that have only one (see broker transitions).
_PREVIOUS_BY_KIND: dict[str, str | None] = {
    "job.submitted": None,
    "job.started": JobState.QUEUED,
    "job.succeeded": JobState.RUNNING,
    "job.failed": JobState.RUNNING,
    "job.returned": JobState.RUNNING,
    "job.due": JobState.SCHEDULED,
}
# Kinds with several possible previous states ("job.requeued": a failed attempt, or dependencies met).
_CANDIDATES: dict[str, tuple[str, ...]] = {
    "job.requeued": (JobState.RUNNING, JobState.WAITING),
    "job.held": (JobState.QUEUED, JobState.WAITING, JobState.SCHEDULED),
    "job.released": (JobState.HELD, JobState.SCHEDULED),
    "job.cancelled": (JobState.WAITING, JobState.QUEUED, JobState.HELD, JobState.RUNNING, JobState.SCHEDULED),
    "job.retried": (JobState.FAILED, JobState.CANCELLED),
}
# The dashboard's columns, in this order: the states of jobs not yet finished, then those of finished ones.
STATES: tuple[str, ...] = (
    JobState.WAITING,
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.HELD,
    JobState.SCHEDULED,
    JobState.SUCCEEDED,
    JobState.FAILED,
    JobState.CANCELLED,
)


class CountBook:
    """Per-queue, per-state job counts; `exact` turns False when an event could not be placed."""

    def __init__(self, known_limit: int = 200_000) -> None:
        self._known_limit = known_limit
        self._counts: dict[str, dict[str, int]] = {}
        self._known: dict[str, str] = {}  # job id -> state, for jobs seen since the snapshot
        self.exact = True

    def reset(self, queues: Mapping[str, Mapping[str, int]], running: Iterable[str] = ()) -> None:
        """Start again from a snapshot; `running` are the job ids the snapshot's workers run."""
        self._counts = {q: dict(by_state) for q, by_state in queues.items()}
        self._known = dict.fromkeys(running, JobState.RUNNING)
        self.exact = True

    def apply(self, event: Event) -> None:
        """Move one job from its previous state to the event's state (a purged job: out of its state)."""
        if event.kind == "job.purged" and event.job_id is not None and event.queue in self._counts:
            by_state = self._counts[event.queue]
            previous = event.previous or self._known.get(event.job_id)
            if previous is not None:
                by_state[previous] = max(0, by_state.get(previous, 0) - 1)
            self._known.pop(event.job_id, None)
            return
        if event.job_id is None or event.state is None or event.queue is None:
            return
        by_state = self._counts.setdefault(event.queue, {})
        previous = self._previous(event, event.job_id, by_state)
        if previous == "?":
            self.exact = False
        elif previous is not None:
            by_state[previous] = max(0, by_state.get(previous, 0) - 1)
        by_state[event.state] = by_state.get(event.state, 0) + 1
        self._remember(event.job_id, event.state)

    def _previous(self, event: Event, job_id: str, by_state: Mapping[str, int]) -> str | None:
        """The job's previous state, None for a new job, or "?" when it cannot be known."""
        # The broker says what the job left (every event from a current broker does): it settles it.
        if event.previous is not None:
            return event.previous
        if job_id in self._known:
            return self._known[job_id]
        if event.kind in _PREVIOUS_BY_KIND:
            return _PREVIOUS_BY_KIND[event.kind]
        candidates = [s for s in _CANDIDATES.get(event.kind, ()) if by_state.get(s, 0) > 0]
        return candidates[0] if len(candidates) == 1 else "?"

    def _remember(self, job_id: str, state: str) -> None:
        self._known.pop(job_id, None)
        self._known[job_id] = state
        if len(self._known) > self._known_limit:  # forget the job seen longest ago (dicts keep order)
            del self._known[next(iter(self._known))]

    def by_queue(self) -> dict[str, dict[str, int]]:
        """A copy of the counts: queue -> state -> jobs."""
        return {q: dict(by_state) for q, by_state in sorted(self._counts.items())}

    def totals(self) -> dict[str, int]:
        """Jobs per state over every queue."""
        totals = dict.fromkeys(STATES, 0)
        for by_state in self._counts.values():
            for state, n in by_state.items():
                totals[state] = totals.get(state, 0) + n
        return totals

    def queues(self) -> list[str]:
        """Every queue the book has seen, sorted."""
        return sorted(self._counts)

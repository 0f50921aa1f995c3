"""Every legal job transition, in one place (h11's Rule 1): the store asks here, never decides alone.

Rule: this module knows states and actions, not SQL and not sockets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gridd.protocol.states import FINISHED as FINISHED
from gridd.protocol.states import JOB_STATES, JobState

QUEUED: Final[str] = JobState.QUEUED
RUNNING: Final[str] = JobState.RUNNING
SUCCEEDED: Final[str] = JobState.SUCCEEDED
FAILED: Final[str] = JobState.FAILED
CANCELLED: Final[str] = JobState.CANCELLED
HELD: Final[str] = JobState.HELD
WAITING: Final[str] = JobState.WAITING

STATES: Final = JOB_STATES

# action -> (states it applies to, state it leads to)
ACTIONS: Final[dict[str, tuple[frozenset[str], str]]] = {
    "cancel": (frozenset({WAITING, QUEUED, HELD, RUNNING}), CANCELLED),
    "hold": (frozenset({WAITING, QUEUED}), HELD),
    "release": (frozenset({HELD}), QUEUED),  # or WAITING while dependencies remain: see ready_state
    "retry": (frozenset({FAILED, CANCELLED}), QUEUED),  # likewise
}


def ready_state(target: str, pending_deps: int) -> str:
    """A job that would be queued waits instead while some of its dependencies have not succeeded."""
    return WAITING if target == QUEUED and pending_deps > 0 else target


def refusal(action: str, job_id: str, state: str) -> str:
    """The one-line reason an action does not apply to a job in `state`."""
    if action in ("cancel", "hold") and state in FINISHED:
        return f"job {job_id} has already finished (state={state})"
    if action == "hold" and state == RUNNING:
        return f"job {job_id} is running; only a queued or waiting job can be held (cancel it instead)"
    if action == "release":
        return f"job {job_id} is not held (state={state})"
    if action == "retry" and state == SUCCEEDED:
        return f"job {job_id} succeeded; there is nothing to retry"
    if action == "retry":
        return f"job {job_id} has not finished (state={state}); only a failed or cancelled job can be retried"
    return f"cannot {action} job {job_id} (state={state})"


def after_attempt(exit_code: int | None, attempts: int, max_attempts: int) -> str:
    """Where a job goes when an attempt ends: succeeded, queued again while attempts remain, else failed."""
    if exit_code == 0:
        return SUCCEEDED
    return QUEUED if attempts < max_attempts else FAILED


def retry_delay_ms(attempt: int, base_ms: int) -> int:
    """Delay before a failed command runs again: grows with the attempt, at most five times the base."""
    return base_ms * min(attempt, 5)


@dataclass(frozen=True, slots=True)
class Transition:
    """A job that changed state in a store call, for counts, events and waiters."""

    job_id: str
    state: str
    queue: str
    attempt: int
    worker: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    previous: str | None = None  # the state it left; None for a new job
    ran_ms: int | None = None  # a recorded result: how long after its lease began (the broker's clock)

"""Every legal job transition, in one table (h11's Rule 1): the store asks here before it changes a job's
state, and never decides alone.

Rule: this module knows states and moves, not SQL and not sockets. A change of state is a move made from
the state a job is in; TABLE maps (state, move) to the state reached, and a pair it does not hold is
illegal: `step` refuses it. A statement that changes states in bulk builds its SQL from the table once
(`edge`, `sources`), so its WHERE and SET say what the table says.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import msgspec

from gridd.protocol.errors import IllegalTransition
from gridd.protocol.states import FINISHED as FINISHED
from gridd.protocol.states import JOB_STATES, JobState
from gridd.protocol.states import JobState as S

QUEUED: Final[str] = JobState.QUEUED
RUNNING: Final[str] = JobState.RUNNING
SUCCEEDED: Final[str] = JobState.SUCCEEDED
FAILED: Final[str] = JobState.FAILED
CANCELLED: Final[str] = JobState.CANCELLED
HELD: Final[str] = JobState.HELD
WAITING: Final[str] = JobState.WAITING
SCHEDULED: Final[str] = JobState.SCHEDULED

STATES: Final = JOB_STATES


class Move(enum.StrEnum):
    """What happens to a job. The four control actions keep the names the protocol gives them."""

    SUBMIT = "submit"
    LEASE = "lease"  # a worker takes it
    SUCCEED = "succeed"  # its attempt exited 0
    REQUEUE = "requeue"  # its attempt failed or its lease expired, and its retry policy runs it again
    FAIL = "fail"  # ... and that was its last attempt, or its retry policy says no (retry_policy.py)
    RETURN = "return"  # its worker gave it back unstarted (draining, a grant lost): the attempt is not spent
    CANCEL = "cancel"
    HOLD = "hold"
    RELEASE = "release"
    RETRY = "retry"
    DEPS_MET = "deps_met"  # its last dependency succeeded
    DEP_LOST = "dep_lost"  # a dependency failed or was cancelled: it can never run
    DUE = "due"  # its start time (submit --at/--in) came


NEW: Final = None  # the state a job is "in" before it is submitted

_ANY_UNFINISHED = (S.WAITING, S.QUEUED, S.HELD, S.RUNNING, S.SCHEDULED)

# (state left, move) -> state reached. A move that queues a job (SUBMIT, RELEASE, RETRY) makes it
# scheduled instead while its start time is ahead, else waiting while some of its dependencies have not
# succeeded: see `step`.
TABLE: Final[Mapping[tuple[str | None, Move], JobState]] = MappingProxyType(
    {
        (NEW, Move.SUBMIT): S.QUEUED,
        (NEW, Move.DEP_LOST): S.CANCELLED,  # submitted --after a job that had already failed
        (S.QUEUED, Move.LEASE): S.RUNNING,
        (S.RUNNING, Move.SUCCEED): S.SUCCEEDED,
        (S.RUNNING, Move.REQUEUE): S.QUEUED,
        (S.RUNNING, Move.FAIL): S.FAILED,
        (S.RUNNING, Move.RETURN): S.QUEUED,
        **{(state, Move.CANCEL): S.CANCELLED for state in _ANY_UNFINISHED},
        (S.WAITING, Move.HOLD): S.HELD,
        (S.QUEUED, Move.HOLD): S.HELD,
        (S.HELD, Move.RELEASE): S.QUEUED,
        (S.FAILED, Move.RETRY): S.QUEUED,
        (S.CANCELLED, Move.RETRY): S.QUEUED,
        (S.WAITING, Move.DEPS_MET): S.QUEUED,
        (S.WAITING, Move.DEP_LOST): S.CANCELLED,
        (S.HELD, Move.DEP_LOST): S.CANCELLED,
        # A scheduled job (submit --at/--in) is queued at its start time, or at once by a release.
        (S.SCHEDULED, Move.DUE): S.QUEUED,
        (S.SCHEDULED, Move.RELEASE): S.QUEUED,
        (S.SCHEDULED, Move.HOLD): S.HELD,
        (S.SCHEDULED, Move.DEP_LOST): S.CANCELLED,
    }
)
# The moves that respect a start time still ahead. A job never starts before its start time but by one
# move: a release of the scheduled job itself ("run it now"). A hold then a release, or a cancel then a
# retry, gives back what was there: the job scheduled at its time.
_WAIT_FOR_TIME: Final = frozenset({Move.SUBMIT, Move.RELEASE, Move.RETRY})
_WAIT_FOR_DEPS: Final = _WAIT_FOR_TIME | {Move.DUE}


def step(state: str | None, move: Move, pending_deps: int = 0, *, start_ahead: bool = False) -> JobState:
    """The state a job in `state` (NEW: not yet submitted) reaches by `move`; IllegalTransition if the
    table does not list it. `pending_deps`: its dependencies that have not succeeded yet; `start_ahead`:
    its start time (submit --at/--in) has not come yet."""
    reached = TABLE.get((state, move))  # a state read as a str equals (and hashes as) its member
    if reached is None:
        raise IllegalTransition(f"a job that is {state or 'not submitted'} cannot {move.value}")
    if reached == S.QUEUED and start_ahead and move in _WAIT_FOR_TIME and state != S.SCHEDULED:
        return S.SCHEDULED
    if reached == S.QUEUED and pending_deps > 0 and move in _WAIT_FOR_DEPS:
        return S.WAITING
    return reached


def allows(state: str, move: Move) -> bool:
    """Whether the table lets a job in `state` make `move`."""
    return (state, move) in TABLE


def sources(move: Move) -> frozenset[JobState]:
    """The states from which `move` is legal (for the WHERE of a statement that makes it)."""
    return frozenset(JobState(state) for (state, m) in TABLE if m == move and state is not None)


def target(move: Move) -> JobState:
    """The state `move` leads to, from whichever state it is made (before waiting for dependencies)."""
    (reached,) = {to for (_, m), to in TABLE.items() if m == move}
    return reached


def edge(move: Move) -> tuple[JobState, JobState]:
    """(from, to) of a move made from one state only (a lease, a hand-back, dependencies met): what the
    constant SQL that makes it tests for and sets."""
    (source,) = sources(move)
    return source, target(move)


# action -> (states it applies to, state it leads to): the control actions, as the table has them.
ACTIONS: Final[dict[str, tuple[frozenset[str], str]]] = {
    move.value: (frozenset(sources(move)), target(move)) for move in (Move.CANCEL, Move.HOLD, Move.RELEASE, Move.RETRY)
}


def refusal(action: str, job_id: str, state: str) -> str:
    """The one-line reason an action does not apply to a job in `state`."""
    if action in (Move.CANCEL, Move.HOLD) and state in FINISHED:
        return f"job {job_id} has already finished (state={state})"
    if action == Move.HOLD and state == RUNNING:
        return f"job {job_id} is running; only a queued, waiting or scheduled job can be held (cancel it instead)"
    if action == Move.RELEASE:
        return f"job {job_id} is not held or scheduled (state={state})"
    if action == Move.RETRY and state == SUCCEEDED:
        return f"job {job_id} succeeded; there is nothing to retry"
    if action == Move.RETRY:
        return f"job {job_id} has not finished (state={state}); only a failed or cancelled job can be retried"
    return f"cannot {action} job {job_id} (state={state})"


def ended_as(state: str) -> str:
    """How a sentence says a job ended in `state`: "succeeded", "failed", "was cancelled"."""
    return f"was {state}" if state == S.CANCELLED else state


class Transition(msgspec.Struct, frozen=True, gc=False):
    """A job that changed state in a store call, for counts, events and waiters. A Struct, not a frozen
    dataclass: one is made per job a call changes (a submit of 1,000 made 1,000), and a frozen dataclass
    took 1.1 us to make against 0.15 us (benchmarks/README.md). gc=False: it holds strings and ints only."""

    job_id: str
    state: str
    queue: str
    attempt: int
    worker: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    previous: str | None = None  # the state it left; None for a new job
    ran_ms: int | None = None  # a recorded result: how long after its lease began (the broker's clock)

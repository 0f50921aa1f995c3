"""What the store's schedule use cases take and return (interface.py), beside the protocol's ScheduleView."""

from __future__ import annotations

from dataclasses import dataclass, field

from gridd.broker.transitions import Transition
from gridd.protocol.messages import JobSpec


@dataclass(frozen=True, slots=True)
class DueSchedule:
    """A schedule whose next slot has come: what the broker needs to decide which slots to fire."""

    name: str
    cron: str
    tz: str
    catch_up: str
    next_slot_ms: int  # the slot due (the conditional update's condition)
    spec: JobSpec


@dataclass(frozen=True, slots=True)
class Firing:
    """Fire `slots` of schedule `name` (one job each; none: the slots were missed and are skipped), and
    move it from `due_ms` to `next_ms`, only if no one moved it already."""

    name: str
    due_ms: int
    next_ms: int | None
    slots: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Fired:
    """What came of one Firing: its jobs' transitions (none: another broker had fired it, or it skipped),
    or why its jobs could not be submitted (the slot is skipped all the same)."""

    name: str
    transitions: list[Transition] = field(default_factory=list)
    refused: str | None = None
    raced: bool = False  # another broker (or call) had moved it first: nothing done

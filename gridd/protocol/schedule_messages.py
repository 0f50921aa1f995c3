"""Periodic schedules kept in the broker (`gridd schedule ...`): add, list, show, pause, resume, remove.

A schedule is a JobSpec template and a cron expression in a time zone; at each slot the broker submits
the template as an ordinary job that names its schedule (JobSpec.schedule). Same schema rules as every
message (messages.py).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from gridd.protocol.base import Record, Reply, Request
from gridd.protocol.features import SCHEDULES
from gridd.protocol.fields import EpochMs, Name
from gridd.protocol.records import JobSpec

# A schedule's name: what `gridd schedule show NAME` and its jobs' `schedule` say.
ScheduleName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")]
CronText = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
ZoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
CatchUp = Annotated[str, msgspec.Meta(pattern="^(none|last|all)$")]
SCHEDULE_ACTIONS = ("pause", "resume", "remove")


class ScheduleView(Record, frozen=True):
    """A schedule as `schedule list --json` shows it."""

    name: str
    cron: str
    tz: str
    catch_up: str  # none | last | all: what a broker that was down does with the slots it missed
    paused: bool
    next_slot_ms: EpochMs | None  # None: its expression fires no more
    last_fired_ms: EpochMs | None  # the slot it last fired (None: never)
    owner: str
    created_ms: EpochMs
    argv: list[str]  # of its jobs (a task's: its name)
    queue: str
    task: str | None = None


class ScheduleRun(Record, frozen=True):
    """One slot fired: the job it made, and that job's state now (None: the job was purged)."""

    slot_ms: EpochMs
    job_id: str
    state: str | None = None


class ScheduleAdded(Reply, frozen=True, tag="schedule.added"):
    schedule: ScheduleView


class AddSchedule(Request[ScheduleAdded], frozen=True, tag="schedule.add"):
    """Keep `spec` to be submitted at each slot of `cron` in `tz`, from now on."""

    name: ScheduleName
    cron: CronText
    spec: JobSpec
    tz: ZoneName = "UTC"
    catch_up: CatchUp = "last"

    def features_used(self) -> list[str]:
        return [SCHEDULES, *self.spec.features_used()]


class SchedulesListed(Reply, frozen=True, tag="schedule.listed"):
    schedules: list[ScheduleView]


class ListSchedules(Request[SchedulesListed], frozen=True, tag="schedule.list"):
    """Every schedule (a submit token's own only), by name."""


class ScheduleShown(Reply, frozen=True, tag="schedule.shown"):
    schedule: ScheduleView
    runs: list[ScheduleRun]  # the latest first


class ShowSchedule(Request[ScheduleShown], frozen=True, tag="schedule.show"):
    name: Name


class ScheduleChanged(Reply, frozen=True, tag="schedule.changed"):
    schedule: ScheduleView  # as it is after the action (remove: as it was)


class ChangeSchedule(Request[ScheduleChanged], frozen=True, tag="schedule.change"):
    """pause (no slot fires until resumed), resume (from the next slot after now: the slots of the pause
    are not caught up), or remove (its jobs stay)."""

    name: Name
    action: Annotated[str, msgspec.Meta(pattern="^(pause|resume|remove)$")]

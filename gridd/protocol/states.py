"""A job's states: the one place their names are written.

They travel as plain strings (a newer broker may add one), so `JobState` is a StrEnum: a member equals its
name on the wire, in SQL and in JSON. Code compares against the members, never against the strings.
"""

from __future__ import annotations

import enum
from typing import Final


class JobState(enum.StrEnum):
    WAITING = "waiting"  # for its dependencies (--after) to succeed
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    HELD = "held"
    SCHEDULED = "scheduled"  # not before its start time (submit --at/--in)


# In the order people read them: before running, running, after.
JOB_STATES: Final[tuple[str, ...]] = tuple(JobState)
FINISHED: Final[frozenset[str]] = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})

"""The host-idle policy: may this machine's owner lend it to the grid right now? Pure: no I/O, no clock.

The agent samples the host (gridd.worker.probes), reads the local time and a monotonic `now_s`, and calls
`HostPolicy.decide()` every few seconds. The policy answers with a Decision; the agent carries it out.

Rule 1: without `when_idle` and without `window` the answer is always RUN. With only a window, only the
  window matters: inside it RUN, outside it the machine is taken back (Rule 4).
Rule 2: with `when_idle`, the owner is "busy" when an admin probe said so (`sample.idle` decides alone when
  set), or else when the owner load is above `max_load`, or someone typed within the last `idle_after_s`.
  An unknown load (the first sample) is not busy; an unknown user idle time (no terminals) counts as away.
Rule 3 (hysteresis): once the owner looked busy, RUN comes back only after `resume_after_s` without a busy
  sample, so a machine whose owner types now and then does not flap. The window has no such delay: its
  edges do not flap. A machine that looks idle when the worker starts runs at once.
Rule 4: a machine taken back (owner busy, or outside the window) answers SUSPEND or VACATE per `on_busy`.
  A suspended job is vacated once it has been suspended for `suspend_max_s` (HTCondor's PREEMPT after
  SUSPEND); `suspended_since_s` is the agent's record of when it suspended its jobs, None if it has not.
Rule 5: `HostPolicy.state` says why, for display: "idle", "owner-busy" (including the Rule 3 cool-down) or
  "outside-window". The agent shows its own states on top: "suspended" (its jobs are stopped) and
  "draining" (it is shutting down); the policy never reports those.
"""

from __future__ import annotations

import datetime
import enum
import re
from dataclasses import dataclass

from gridd.protocol.errors import ConfigError

_WINDOW = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")
ON_BUSY = ("suspend", "vacate")


class Decision(enum.StrEnum):
    """What the agent does with the machine."""

    RUN = "run"  # take jobs, and keep (or resume) running them
    SUSPEND = "suspend"  # take no jobs; stop running jobs' processes (SIGSTOP) and keep their leases
    VACATE = "vacate"  # take no jobs; end running jobs and hand them back (their attempt not spent)


@dataclass(frozen=True, slots=True)
class Window:
    """Local wall-clock hours when the machine may run jobs: [start, end), crossing midnight if end < start.

    Equal ends ("00:00-00:00") mean the whole day.
    """

    start: datetime.time
    end: datetime.time

    @classmethod
    def parse(cls, text: str) -> Window:
        """Read "HH:MM-HH:MM" (e.g. "20:00-06:00"); a ConfigError names the text otherwise."""
        match = _WINDOW.fullmatch(text.strip())
        hm = [int(g) for g in match.groups()] if match else []
        if not hm or hm[0] > 23 or hm[2] > 23 or hm[1] > 59 or hm[3] > 59:
            raise ConfigError(f"bad time window {text!r}: expected HH:MM-HH:MM, e.g. 20:00-06:00")
        return cls(datetime.time(hm[0], hm[1]), datetime.time(hm[2], hm[3]))

    def contains(self, t: datetime.time) -> bool:
        """Whether local time `t` (naive, or its zone is ignored) falls in the window."""
        t = t.replace(tzinfo=None)
        if self.start == self.end:
            return True
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """When this machine belongs to the grid (the module's rules say how each field is used)."""

    when_idle: bool = False
    max_load: float = 0.3  # owner load: CPU busy fraction of the whole machine (0..1) not caused by gridd's jobs
    idle_after_s: float = 300.0  # no interactive input for this long counts as away
    window: Window | None = None
    on_busy: str = "suspend"  # "suspend" | "vacate"
    suspend_max_s: float | None = None  # None: a suspended job waits for as long as it takes
    resume_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.on_busy not in ON_BUSY:
            raise ConfigError(f"on_busy must be 'suspend' or 'vacate', not {self.on_busy!r}")
        if not 0.0 <= self.max_load <= 1.0:
            raise ConfigError(f"max_load must be between 0 and 1, not {self.max_load}")
        durations = {"idle_after_s": self.idle_after_s, "resume_after_s": self.resume_after_s}
        if self.suspend_max_s is not None:
            durations["suspend_max_s"] = self.suspend_max_s
        for name, value in durations.items():
            if value < 0:
                raise ConfigError(f"{name} must not be negative, not {value}")


@dataclass(frozen=True, slots=True)
class HostSample:
    """One look at the host. None means unknown."""

    owner_load: float | None  # CPU busy fraction (0..1) of the whole machine not caused by gridd
    user_idle_s: float | None  # seconds since the last interactive input; None: no session, i.e. away
    idle: bool | None = None  # an admin probe's verdict; when set, it decides alone


class HostPolicy:
    """Turns host samples into Decisions (see the module's rules). Holds only the Rule 3 memory."""

    def __init__(self, settings: PolicySettings) -> None:
        self._s = settings
        self._last_busy_s: float | None = None  # now_s of the latest sample in which the owner looked busy
        self.state = "idle"

    def decide(
        self, sample: HostSample, local_time: datetime.time, now_s: float, suspended_since_s: float | None
    ) -> Decision:
        """The decision for this moment; `now_s` is monotonic seconds, `local_time` the local wall clock."""
        s = self._s
        if s.window is not None and not s.window.contains(local_time):
            return self._taken_back("outside-window", now_s, suspended_since_s)
        if s.when_idle:
            busy = self._owner_busy(sample)
            if busy:
                self._last_busy_s = now_s
            if busy or (self._last_busy_s is not None and now_s - self._last_busy_s < s.resume_after_s):
                return self._taken_back("owner-busy", now_s, suspended_since_s)
        self.state = "idle"
        return Decision.RUN

    def _owner_busy(self, sample: HostSample) -> bool:
        if sample.idle is not None:
            return not sample.idle
        loaded = sample.owner_load is not None and sample.owner_load > self._s.max_load
        typing = sample.user_idle_s is not None and sample.user_idle_s < self._s.idle_after_s
        return loaded or typing

    def _taken_back(self, state: str, now_s: float, suspended_since_s: float | None) -> Decision:
        self.state = state
        if self._s.on_busy == "vacate":
            return Decision.VACATE
        limit = self._s.suspend_max_s
        if limit is not None and suspended_since_s is not None and now_s - suspended_since_s >= limit:
            return Decision.VACATE
        return Decision.SUSPEND

"""Desk: what this worker's machine does for the grid now, and whether the worker takes work.

Rule: one writer, the agent (its drain(), and gridd.worker.lending carrying out the host policy's
decisions); every other part only reads `accepting` and `state`. The session's state reporter is the one
task that waits for it to change (`wait_changed`).
"""

from __future__ import annotations

from gridd.worker.nudge import Nudge
from gridd.worker.policy import Decision


class Desk:
    """The host policy's latest decision and state, when jobs were suspended, and whether draining began."""

    def __init__(self) -> None:
        self._decision = Decision.RUN
        self._host_state = "available"
        self._suspended_since: float | None = None
        self._draining = False
        self._changed = Nudge()

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def decision(self) -> Decision:
        return self._decision

    @property
    def accepting(self) -> bool:
        """Whether the worker takes (and starts) jobs: not draining, and the machine is the grid's."""
        return not self._draining and self._decision is Decision.RUN

    @property
    def state(self) -> str:
        """What this worker's machine does for the grid now (messages.WORKER_STATES)."""
        if self._draining:
            return "draining"
        return "suspended" if self._suspended_since is not None else self._host_state

    @property
    def suspended_since_s(self) -> float | None:
        """When (the policy's monotonic seconds) this worker suspended its jobs; None while none are."""
        return self._suspended_since

    def begin_drain(self) -> bool:
        """Draining begins (True), or had already (False)."""
        if self._draining:
            return False
        self._draining = True
        self._changed()
        return True

    def decide(self, decision: Decision, host_state: str) -> None:
        self._decision, self._host_state = decision, host_state
        self._changed()

    def note_suspended(self, suspended: bool, now_s: float) -> None:
        """Whether some job is stopped now; the time it began is kept while some stays stopped."""
        if not suspended:
            self._suspended_since = None
        elif self._suspended_since is None:
            self._suspended_since = now_s
        self._changed()

    async def wait_changed(self) -> None:
        """Until the state or `accepting` may have changed (one waiter: the session's reporter)."""
        await self._changed.wait()

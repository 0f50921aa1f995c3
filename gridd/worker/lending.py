"""Lending: carrying out the host policy's decisions (gridd.worker.host) on the jobs this worker holds.

Rules:
- While the owner has the machine back, the worker asks for nothing: the request under way is given up.
- SUSPEND stops the running command jobs' process groups and keeps their leases alive by heartbeat; RUN
  continues them. Jobs that cannot be stopped that way (Python tasks, which run inside the worker) and
  jobs leased ahead are handed back instead, as VACATE does with all of them: queued again at once,
  their attempt not spent. The broker hears of every state change (gridd.worker.desk).
- A draining worker ignores the policy: winding down already decides what happens to every job.
"""

from __future__ import annotations

import structlog

from gridd.worker.desk import Desk
from gridd.worker.leasing import Leasing
from gridd.worker.nudge import Nudge
from gridd.worker.policy import Decision
from gridd.worker.running import RunningJobs

log = structlog.get_logger()


class Lending:
    """What the host watch hands its decisions to (host.Lender)."""

    def __init__(self, desk: Desk, jobs: RunningJobs, leasing: Leasing, wake_leasing: Nudge) -> None:
        self._desk = desk
        self._jobs = jobs
        self._leasing = leasing
        self._wake_leasing = wake_leasing

    @property
    def suspended_since_s(self) -> float | None:
        return self._desk.suspended_since_s

    def job_groups(self) -> list[int]:
        return self._jobs.groups()

    def lend(self, decision: Decision, host_state: str, now_s: float) -> None:
        """Carry out the host policy's decision (see the module's rules); `now_s` is the policy's clock."""
        desk = self._desk
        if desk.draining:
            return
        if decision is not desk.decision:
            log.info("worker.lending", decision=str(decision), host_state=host_state, jobs=len(self._jobs))
        desk.decide(decision, host_state)
        if decision is Decision.RUN:
            self._jobs.resume()
            desk.note_suspended(False, now_s)
        else:
            self._leasing.stop_asking()
            self._leasing.send_back_soon(self._jobs.suspend(vacate=decision is Decision.VACATE))
            desk.note_suspended(self._jobs.any_suspended(), now_s)
        self._wake_leasing()

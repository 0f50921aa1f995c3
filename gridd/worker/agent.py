"""The worker agent: keeps a connection to the broker, runs up to `slots` jobs, delivers every result.

It composes the parts, each owning its state; they call each other through narrow methods and wake
each other with one Nudge per waiting task (gridd.worker.nudge), never through shared fields:
- session.py: the connection, kept up with backoff, and the tasks that use it (heartbeats, revocations,
  state reports);
- leasing.py: lease requests (one long poll at a time, leasing ahead while jobs are short) and leases
  handed back;
- running.py: the jobs held, started as they fit and stopped when told;
- delivery.py: results until the broker acknowledges them, and running jobs' output;
- desk.py and lending.py: what the machine does for the grid now, and the host policy's decisions
  carried out (suspend, continue, vacate);
- link.py: the connection of the moment, for the calls a job makes (task payloads, bundle files).

drain() (SIGTERM): ask for nothing more, hand back at once what was leased ahead, give running jobs
`grace_s`, hand back what still runs (its attempt not spent), deliver the results, and return.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import structlog
from anyio.abc import TaskStatus

from gridd.clock import Clock
from gridd.worker.bundles import BundleCache
from gridd.worker.capacity import Capacity
from gridd.worker.delivery import Delivery
from gridd.worker.desk import Desk
from gridd.worker.host import HostWatch
from gridd.worker.job_users import JobUsers
from gridd.worker.leasing import Leasing
from gridd.worker.lending import Lending
from gridd.worker.link import BrokerLink
from gridd.worker.nudge import Nudge
from gridd.worker.policy import Decision
from gridd.worker.runner import RunSettings
from gridd.worker.running import Runners, RunningJobs
from gridd.worker.session import Session
from gridd.worker.settings import AgentSettings
from gridd.worker.task_runner import TaskSettings

__all__ = ["AgentSettings", "WorkerAgent"]

log = structlog.get_logger()

UNDELIVERED_WAIT_S = 5  # after the grace: how long results of the last jobs may take to reach the broker


class WorkerAgent:
    """One worker process's link to the grid."""

    def __init__(
        self,
        settings: AgentSettings,
        run: RunSettings,
        clock: Clock,
        *,
        tasks: TaskSettings | None = None,
        lock: int | None = None,
        bundle_dir: Path | None = None,
    ) -> None:
        self._s = settings
        self._run = run
        self._lock = lock  # the work dir's lock (an open file), released when run() ends
        capacity = Capacity(settings.slots, settings.cpus or settings.slots, settings.memory_mb)
        # Beside the work dir by default (the work dir is emptied at start; the cache must survive).
        bundle_dir = bundle_dir or run.work_dir.with_name(f"{run.work_dir.name}.bundles")
        self._link = BrokerLink()
        self._desk = Desk()
        self._delivery = Delivery()
        self._wake_leasing = Nudge()
        runners = Runners(run, clock, BundleCache(bundle_dir, self._link.call), self._link, tasks)
        self._jobs = RunningJobs(capacity, runners, self._desk, self._delivery, self._wake_leasing)
        self._leasing = Leasing(self._jobs, self._desk, self._link, self._wake_leasing)
        self._lending = Lending(self._desk, self._jobs, self._leasing, self._wake_leasing)
        modules = tasks.modules if tasks else []
        self._session = Session(settings, modules, self._link, self._desk, self._jobs, self._leasing, self._delivery)
        self._drain_begun = anyio.Event()
        self.watch: HostWatch | None = None  # set by the composition root when the machine is only lent

    @property
    def job_users(self) -> JobUsers | None:
        """Who its command jobs run as (None: the worker's own user)."""
        return self._run.users

    @property
    def running(self) -> int:
        """Jobs started and not yet ended."""
        return self._jobs.started

    @property
    def draining(self) -> bool:
        return self._desk.draining

    @property
    def state(self) -> str:
        """What this worker's machine does for the grid now (messages.WORKER_STATES)."""
        return self._desk.state

    @property
    def suspended_since_s(self) -> float | None:
        """When (the policy's monotonic seconds) this worker suspended its jobs; None while none are."""
        return self._desk.suspended_since_s

    def job_groups(self) -> list[int]:
        """The process groups of the command jobs running now (their CPU time is not the owner's)."""
        return self._jobs.groups()

    def lend(self, decision: Decision, host_state: str, now_s: float) -> None:
        """Carry out the host policy's decision (gridd.worker.lending)."""
        self._lending.lend(decision, host_state, now_s)

    def drain(self) -> None:
        """Stop taking work and wind down (see the module's rules)."""
        if self._desk.begin_drain():
            log.info("worker.draining", running=len(self._jobs), grace_s=self._s.grace_s)
            self._wake_leasing()
            self._drain_begun.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._run_until_drained(task_status)
        finally:
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None

    async def _run_until_drained(self, task_status: TaskStatus[None]) -> None:
        async with anyio.create_task_group() as jobs:
            self._jobs.attach(jobs)
            self._leasing.attach(jobs)
            if self.watch is not None:
                await jobs.start(self.watch.run, self._lending)
            task_status.started()
            with anyio.CancelScope() as links:
                jobs.start_soon(self._wind_down, links)
                await self._session.keep_connected()
            # Drained: wind-down cancelled the link loop once results were delivered (or the broker stayed away).
            jobs.cancel_scope.cancel()

    async def _wind_down(self, links: anyio.CancelScope) -> None:
        await self._drain_begun.wait()
        self._leasing.stop_asking()
        await self._leasing.send_back(self._jobs.let_go([h for h in self._jobs if not h.started]))  # at once
        with anyio.move_on_after(self._s.grace_s):
            await self._jobs.wait_empty()
        await self._leasing.send_back(self._jobs.let_go(list(self._jobs)))
        with anyio.move_on_after(self._s.grace_s + UNDELIVERED_WAIT_S):
            await self._jobs.wait_empty()
            await self._delivery.wait_delivered()
        if self._delivery.pending:
            log.error("worker.results_undelivered", count=self._delivery.pending)
        links.cancel()

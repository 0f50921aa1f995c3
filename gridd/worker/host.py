"""HostWatch: looks at the host every few seconds and hands the idle policy's decision to the agent.

Rule: the watch only samples and asks; the policy (gridd.worker.policy) decides, and the agent carries the
decision out (gridd.worker.lending: suspending, continuing or handing back its jobs). Samples are taken in a
thread: probes read /proc or run an admin's command. The first decision is made before the agent asks for
any job, so a machine whose owner is at it when the worker starts takes nothing.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import anyio
import structlog
from anyio.abc import TaskStatus

from gridd.config import WorkerConfig
from gridd.worker.policy import Decision, HostPolicy, PolicySettings, Window
from gridd.worker.probes import CommandProbe, HostProbe, LinuxProbe

log = structlog.get_logger()


class Lender(Protocol):
    """What the watch needs of the agent (gridd.worker.lending.Lending provides it)."""

    @property
    def suspended_since_s(self) -> float | None: ...

    def lend(self, decision: Decision, host_state: str, now_s: float) -> None: ...

    def job_groups(self) -> Iterable[int]: ...


class HostWatch:
    """Samples the host every `every_s` seconds and tells the agent what to do (see the module's rules)."""

    def __init__(
        self,
        probe: HostProbe,
        policy: HostPolicy,
        every_s: float,
        *,
        when_idle: bool,
        local_time: Callable[[], datetime.time] = lambda: datetime.datetime.now().time(),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._policy = policy
        self._every_s = every_s
        self._when_idle = when_idle
        self._local_time = local_time
        self._monotonic = monotonic

    async def run(self, agent: Lender, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self.step(agent)
        task_status.started()
        while True:
            await anyio.sleep(self._every_s)
            await self.step(agent)

    async def step(self, agent: Lender) -> Decision:
        """One look at the host, and the decision it led to (already handed to the agent)."""
        sample = await anyio.to_thread.run_sync(self._probe.sample)
        now_s = self._monotonic()
        decision = self._policy.decide(sample, self._local_time(), now_s, agent.suspended_since_s)
        state = self._policy.state
        if state == "idle" and not self._when_idle:
            state = "available"  # only a window: the owner's presence is not looked at
        agent.lend(decision, state, now_s)
        return decision


def make_host_watch(config: WorkerConfig, job_groups: Callable[[], Iterable[int]]) -> HostWatch | None:
    """The watch the settings ask for, or None when the machine is the grid's at all times."""
    when_idle = config.when_idle or bool(config.idle_probe)
    if not when_idle and config.window is None:
        return None
    settings = PolicySettings(
        when_idle=when_idle,
        max_load=config.max_load,
        idle_after_s=config.idle_after_s,
        window=Window.parse(config.window) if config.window is not None else None,
        on_busy=config.on_busy,
        suspend_max_s=config.suspend_max_s,
        resume_after_s=config.resume_after_s,
    )
    probe: HostProbe = CommandProbe(config.idle_probe) if config.idle_probe else LinuxProbe(job_groups)
    log.info("worker.policy", when_idle=when_idle, window=config.window, on_busy=config.on_busy)
    return HostWatch(probe, HostPolicy(settings), config.probe_every_s, when_idle=when_idle)

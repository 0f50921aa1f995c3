"""The lease reaper: returns the jobs of vanished workers to the queue, or fails them after their last
attempt. Its step, reap_once, is public so that tests drive it with a fake clock instead of waiting.
"""

from __future__ import annotations

import anyio
import structlog
from anyio.abc import TaskStatus

from gridd.broker.core import Broker
from gridd.broker.transitions import Transition
from gridd.clock import Clock
from gridd.protocol.errors import GriddError

log = structlog.get_logger()


class LeaseReaper:
    """Every `every_s`, expire the leases whose deadline has passed."""

    def __init__(self, broker: Broker, clock: Clock, every_s: float) -> None:
        self._broker = broker
        self._clock = clock
        self._every_s = every_s

    async def reap_once(self, now_ms: int) -> list[Transition]:
        return await self._broker.expire_leases(now_ms)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await anyio.sleep(self._every_s)
            try:
                await self.reap_once(self._clock.now_ms())
            except GriddError as exc:
                log.error("reaper.failed", error=str(exc))

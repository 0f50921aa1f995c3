"""The broker's housekeeping: retention (finished jobs older than --keep), the lanes no job uses any
more, and the connections of tokens that expire. Its step, once, is public so that tests drive it
instead of waiting for its period.
"""

from __future__ import annotations

import anyio
import structlog
from anyio.abc import TaskStatus

from gridd.broker.core import Broker
from gridd.protocol.errors import GriddError

log = structlog.get_logger()


class Maintenance:
    """Every `every_s` (and once at start): purge what --keep says has been kept long enough, forget the
    submit keys past their TTL, and drop the lanes of queues with no job left to lease."""

    def __init__(self, broker: Broker, every_s: float) -> None:
        self._broker = broker
        self._every_s = every_s

    async def once(self) -> int:
        """One round; returns how many jobs it purged."""
        purged = 0
        if self._broker.settings.keep_ms is not None:
            purged, _ = await self._broker.purge()
        await self._broker.forget_keys()  # submit keys past their TTL, whatever --keep says
        await self._broker.drop_idle_lanes()
        return purged

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            # Expired tokens lose their connections within a second, not at the next round.
            await tg.start(self._broker.sessions.run, self._broker.clock)
            task_status.started()
            while True:
                try:
                    await self.once()
                except GriddError as exc:
                    log.error("maintenance.failed", error=str(exc))
                await anyio.sleep(self._every_s)

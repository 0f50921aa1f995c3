"""The broker's schedule requests as methods (`gridd schedule ...`), mixed into BrokerCalls (calls.py).

A schedule keeps a JobSpec and submits it at each slot of its cron expression, as a job that names it.
"""

from __future__ import annotations

from collections.abc import Sequence

from gridd.client.connection import Connection
from gridd.protocol.messages import (
    AddSchedule,
    ChangeSchedule,
    JobSpec,
    ListSchedules,
    ScheduleRun,
    ScheduleView,
    ShowSchedule,
)


class ScheduleCalls:
    """Add, list, show, pause, resume and remove periodic schedules."""

    connection: Connection

    async def add_schedule(
        self,
        name: str,
        cron: str,
        job: Sequence[str] | JobSpec,
        *,
        tz: str = "UTC",
        catch_up: str = "last",
    ) -> ScheduleView:
        """Submit `job` (a command, or a JobSpec: a task's is `TaskDef.spec(call)`) at each slot of `cron`
        ("0 2 * * *", "@hourly") in time zone `tz`; `catch_up` (none, last, all): what a broker that was
        down does with the slots it missed. InvalidRequest for a bad expression or zone, a taken name."""
        spec = job if isinstance(job, JobSpec) else JobSpec(argv=list(job))
        reply = await self.connection.request(
            lambda rid: AddSchedule(rid=rid, name=name, cron=cron, spec=spec, tz=tz, catch_up=catch_up)
        )
        return reply.schedule

    async def schedules(self) -> list[ScheduleView]:
        """Every schedule this credential may see, by name."""
        reply = await self.connection.request(lambda rid: ListSchedules(rid=rid))
        return list(reply.schedules)

    async def schedule(self, name: str) -> tuple[ScheduleView, list[ScheduleRun]]:
        """A schedule and its latest runs (the latest first): each slot's job and its state."""
        reply = await self.connection.request(lambda rid: ShowSchedule(rid=rid, name=name))
        return reply.schedule, list(reply.runs)

    async def change_schedule(self, name: str, action: str) -> ScheduleView:
        """pause, resume (from the next slot: a pause's slots are not caught up) or remove (its jobs stay)."""
        reply = await self.connection.request(lambda rid: ChangeSchedule(rid=rid, name=name, action=action))
        return reply.schedule

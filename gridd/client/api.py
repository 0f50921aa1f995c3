"""The Python API: `async with connect(address, token) as client`, then submit, inspect, control, wait
(the broker's requests, client/calls.py), and run Python tasks (`submit_task`, `map`) and follow jobs
(`handle`, `as_completed`). `gridd.connect_sync` is the same client for code that is not async
(client/sync.py).

Used as it is by the CLI, the TUI, the worker and user programs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from gridd.client import mapping
from gridd.client.calls import BrokerCalls
from gridd.client.connection import open_connection
from gridd.client.handles import JobHandle, TaskHandle
from gridd.client.locate import resolve
from gridd.client.taskdef import TaskDef
from gridd.protocol.messages import JobView, ScheduleView

R = TypeVar("R")


class Client(BrokerCalls):
    """A connected client: every request of the broker (BrokerCalls), and tasks, handles and fan-out on
    top of them. Create it with `connect(...)`."""

    async def submit_task(self, task: TaskDef[Any, R], /, *args: Any, **kwargs: Any) -> TaskHandle[R]:
        """Call `task(*args, **kwargs)` on the grid; the arguments are checked here first (BadArguments)."""
        call = await self.task_call(task.name, task.encode_call(args, kwargs))
        (job_id,) = await self.submit_many([task.spec(call)])
        return TaskHandle(self, job_id, task)

    async def add_task_schedule(
        self,
        name: str,
        cron: str,
        task: TaskDef[Any, Any],
        /,
        *args: Any,
        tz: str = "UTC",
        catch_up: str = "last",
        **kwargs: Any,
    ) -> ScheduleView:
        """Call `task(*args, **kwargs)` at each slot of `cron` in `tz` (see add_schedule)."""
        call = await self.task_call(task.name, task.encode_call(args, kwargs))
        return await self.add_schedule(name, cron, task.spec(call), tz=tz, catch_up=catch_up)

    def map(
        self, task: TaskDef[Any, Any], records: Iterable[Any], *, batch: int = 100, ordered: bool = True
    ) -> AsyncIterator[Any]:
        """Run `task` over `records` in jobs of `batch` records; one result per record, in input order
        (`ordered=False`: as jobs complete). A failed job raises TaskFailed/JobFailed and cancels the
        rest, as does leaving the loop early."""
        return mapping.map_task(self, task, records, batch=batch, ordered=ordered)

    def as_completed(self, job_ids: Sequence[str]) -> AsyncIterator[JobView]:
        """Each job once it has finished, in the order they finish."""
        return mapping.as_completed(self, job_ids)

    def handle(self, job_id: str, task: TaskDef[Any, Any] | None = None) -> JobHandle:
        """A handle on a job submitted earlier (a task's, to decode its result, when `task` is given)."""
        return TaskHandle(self, job_id, task) if task is not None else JobHandle(self, job_id)


@asynccontextmanager
async def connect(
    address: str | None = None, token: str | None = None, *, name: str | None = None, insecure: bool | None = None
) -> AsyncIterator[Client]:
    """Connect to the broker at HOST:PORT with a credential (`gridd1-...`, or the plain cluster secret).
    Without them: GRIDD_BROKER and GRIDD_TOKEN, else the login file's, else the local broker's (as the CLI
    finds them). TLS unless `insecure` (None: GRIDD_INSECURE or the config file says). The connection is
    the client's, and closes when the block ends."""
    address, token, insecure = resolve(address, token, insecure)
    async with open_connection(address, token, role="client", name=name, insecure=insecure) as connection:
        yield Client(connection)

"""Handles: a submitted job as an object to wait for, cancel, and read the result of.

A handle asks the client it was made with (any BrokerCalls: the async Client) and keeps no state of its
own beyond the job's id; the sync face wraps a handle rather than being one (client/blocking.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gridd.client.calls import BrokerCalls
from gridd.client.taskdef import TaskDef
from gridd.protocol.errors import JobFailed, TaskFailed
from gridd.protocol.messages import JobView, TaskOutcome
from gridd.protocol.states import JobState

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class CommandResult:
    """How a command job ended, with what it wrote."""

    exit_code: int | None
    stdout: bytes
    stderr: bytes


class JobHandle:
    """A submitted job (`client.handle(job_id)`)."""

    def __init__(self, client: BrokerCalls, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"

    async def wait(self) -> JobView:
        """The job, once it has finished (succeeded, failed or cancelled)."""
        (view,) = await self.client.wait([self.id])
        return view

    async def cancel(self) -> None:
        await self.client.cancel(self.id)

    async def result(self) -> Any:
        """Wait, then the command's exit status and output; JobFailed if it did not succeed."""
        view = await self.wait()
        if view.state != JobState.SUCCEEDED:
            raise _failure(view.id, view.state, view.exit_code, view.reason)
        stdout, _ = await self.client.output(self.id, "stdout")
        stderr, _ = await self.client.output(self.id, "stderr")
        return CommandResult(view.exit_code, stdout, stderr)


class TaskHandle(JobHandle, Generic[R]):
    """A submitted task call: `await handle.result()` is its return value, or raises what it raised."""

    def __init__(self, client: BrokerCalls, job_id: str, task: TaskDef[Any, R]) -> None:
        super().__init__(client, job_id)
        self.task = task

    async def result(self) -> R:
        (outcome,) = await self.client.next_results([self.id])  # one request: waits, then reads
        return self.task.decode_result(await value_of(self.client, outcome))


async def value_of(client: BrokerCalls, outcome: TaskOutcome) -> bytes:
    """The encoded value of a finished task job; TaskFailed/JobFailed if it has none."""
    if outcome.state != JobState.SUCCEEDED:
        if outcome.error is not None:
            e = outcome.error
            exc = TaskFailed(
                f"job {outcome.job_id} raised {e.type}: {e.message}",
                job_id=outcome.job_id,
                state=outcome.state,
                remote_type=e.type,
                remote_message=e.message,
                remote_traceback=e.traceback,
            )
            if e.traceback:
                exc.add_note(f"Traceback on the worker:\n{e.traceback.rstrip()}")
            raise exc
        raise _failure(outcome.job_id, outcome.state, outcome.exit_code, outcome.reason)
    if outcome.value_blob is not None:
        return await client.download(outcome.value_blob)
    return outcome.value


def _failure(job_id: str, state: str, exit_code: int | None, reason: str | None) -> JobFailed:
    why = f": {reason}" if reason else ""
    return JobFailed(f"job {job_id} {state}{why}", job_id=job_id, state=state, exit_code=exit_code)

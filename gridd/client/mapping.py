"""Fan-out: a large iterable of records as jobs of `batch` records each, and their results gathered.

The records are read once, batch by batch, and submitted as one group in chunks of up to SUBMIT_JOBS
jobs, so memory holds one chunk, not the iterable. Results come back per job as jobs finish (one long
poll serves every job that finished meanwhile) and are yielded per record: in input order, or in the
order jobs complete. When a job fails, or the caller stops early, the map's unfinished jobs are
cancelled: nobody would read their results.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import anyio

from gridd.client.calls import BrokerCalls
from gridd.client.handles import value_of
from gridd.client.taskdef import TaskDef
from gridd.protocol.errors import GriddError
from gridd.protocol.messages import JobSpec, JobView

SUBMIT_JOBS = 1000
WINDOW = 1000


async def map_task(
    client: BrokerCalls, task: TaskDef[Any, Any], records: Iterable[Any], *, batch: int, ordered: bool
) -> AsyncIterator[Any]:
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    job_ids, group = await _submit_batches(client, task, records, batch)
    if not job_ids:
        return
    finished = False
    try:
        async for results in _results(client, task, job_ids, ordered):
            for value in results:
                yield value
        finished = True
    finally:
        if not finished and group is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await _cancel_rest(client, group)


async def as_completed(client: BrokerCalls, job_ids: Sequence[str]) -> AsyncIterator[JobView]:
    """Each job once it has finished, in the order they finish."""
    async for views in _finishing(client, list(dict.fromkeys(job_ids))):
        for view in views:
            yield view


async def _submit_batches(
    client: BrokerCalls, task: TaskDef[Any, Any], records: Iterable[Any], batch: int
) -> tuple[list[str], str | None]:
    job_ids: list[str] = []
    group: str | None = None
    source = iter(records)
    first = 0
    chunk: list[JobSpec] = []
    while True:
        items = list(itertools.islice(source, batch))
        if items:
            chunk.append(await _batch_spec(client, task, items, first))
            first += len(items)
        if chunk and (not items or len(chunk) >= SUBMIT_JOBS):
            ids, group = await client.submit_chunk(chunk, new_group=group is None, group=group)
            job_ids.extend(ids)
            chunk = []
        if not items:
            return job_ids, group


async def _batch_spec(client: BrokerCalls, task: TaskDef[Any, Any], items: list[Any], first: int) -> JobSpec:
    payload = task.encode_records(items, first)
    return task.spec(await client.task_call(task.name, payload, records=len(items)))


async def _results(
    client: BrokerCalls, task: TaskDef[Any, Any], job_ids: list[str], ordered: bool
) -> AsyncIterator[list[Any]]:
    """Each job's list of results: in job order, or as jobs finish. One long poll serves every job of
    the window that finished meanwhile; the window (the oldest WINDOW unfinished jobs) keeps each poll
    small however many jobs the map has."""
    position = {job_id: i for i, job_id in enumerate(job_ids)}
    ready: dict[int, list[Any]] = {}
    next_out = 0
    window = _Window(job_ids)
    while window.ids:
        outcomes = await client.next_results(window.ids)
        window.finished(o.job_id for o in outcomes)
        for outcome in outcomes:
            values = task.decode_batch(await value_of(client, outcome))
            if not ordered:
                yield values
                continue
            ready[position[outcome.job_id]] = values
        while next_out in ready:
            yield ready.pop(next_out)
            next_out += 1


async def _finishing(client: BrokerCalls, job_ids: list[str]) -> AsyncIterator[list[JobView]]:
    """The jobs that finished since the last step, a list per long poll (over a window, as above)."""
    window = _Window(job_ids)
    while window.ids:
        done = await client.wait(window.ids, any_=True)
        window.finished(v.id for v in done)
        yield done


class _Window:
    """The oldest WINDOW unfinished jobs of a list, refilled from the rest as they finish: each step
    costs the window's size, not the list's."""

    def __init__(self, job_ids: list[str]) -> None:
        self._rest = iter(job_ids)
        self.ids: list[str] = list(itertools.islice(self._rest, WINDOW))

    def finished(self, job_ids: Iterable[str]) -> None:
        done = set(job_ids)
        kept = [j for j in self.ids if j not in done]
        self.ids = kept + list(itertools.islice(self._rest, WINDOW - len(kept)))


async def _cancel_rest(client: BrokerCalls, group: str) -> None:
    with contextlib.suppress(GriddError):  # the broker went away: nothing more to stop from here
        await client.control("cancel", [group])

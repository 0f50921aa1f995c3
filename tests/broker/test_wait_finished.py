"""`wait` answers with the jobs as they finished, even when one finishes while the broker reads it."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from gridd.protocol.errors import UnknownJob
from tests.conftest import client_of, running_broker, running_worker


async def test_wait_never_returns_a_job_still_running(tmp_path: Path) -> None:
    """Submit-then-wait, many times over on an idle grid: a job that finished during the broker's first
    read of it used to come back as `running` (about one in a hundred)."""
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, slots=2), client_of(b) as client:
        with anyio.fail_after(60):
            states, ids = [], []
            for _ in range(300):
                ids.append(await client.submit(["true"]))
                (job,) = await client.wait(ids[-1:])
                states.append(job.state)
            # Some finished long ago, one not yet: the wait returns once that one has, with all of them.
            jobs = await client.wait([*ids[:2], await client.submit(["true"])])
    assert set(states) == {"succeeded"}
    assert [j.state for j in jobs] == ["succeeded"] * 3


async def test_result_long_polls_of_one_connection_see_every_finish_whatever_they_remember(tmp_path: Path) -> None:
    """A connection's result long polls (what `map` and `handle.result()` send) over a window of jobs: the
    broker keeps watching the window between polls and reads only what changed, yet each poll answers
    with every asked job that has finished, asked about for the first time or again."""
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with anyio.fail_after(30):
            a, c, d = [await client.submit(["true"]) for _ in range(3)]  # no worker: they stay queued
            answered: list[list[str]] = []

            async def poll(ids: list[str]) -> None:
                answered.append([o.job_id for o in await client.next_results(ids)])

            async with anyio.create_task_group() as tg:
                tg.start_soon(poll, [a, c])
                await anyio.wait_all_tasks_blocked()
                await client.cancel(a)
            assert answered == [[a]]
            assert [o.job_id for o in await client.next_results([a, c])] == [a]  # asked again: answered again
            async with anyio.create_task_group() as tg:
                tg.start_soon(poll, [c])
                await anyio.wait_all_tasks_blocked()
                await client.cancel(c)
            assert answered[-1] == [c]
            await client.cancel(d)
            # d is new to the window and finished before it was asked about; c is still asked about.
            outcomes = await client.next_results([c, d])
            assert [o.job_id for o in outcomes] == [c, d] and {o.state for o in outcomes} == {"cancelled"}
            for _ in range(2):  # an unknown job is refused each time, not remembered as unfinished
                with pytest.raises(UnknownJob):
                    await client.next_results([d, "999999"])

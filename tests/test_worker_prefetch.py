"""A worker leases ahead only while jobs are short, and gives what it leased ahead back at once when it
drains, without spending those jobs' attempts."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from gridd.protocol.messages import JobSpec
from tests.conftest import client_of, running_broker, running_worker
from tests.polling import eventually

SLOW = [sys.executable, "-c", "import time; time.sleep(30)"]


async def test_a_draining_worker_hands_back_jobs_it_leased_ahead_at_once_and_unspent(tmp_path: Path) -> None:
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, slots=1, grace_s=0.5) as agent,
        client_of(b) as client,
    ):
        with anyio.fail_after(30):
            await client.wait(await client.submit_many([_spec(["true"])] * 4))  # recent jobs are short
            slow = await client.submit_many([_spec(SLOW)] * 3)

            async def one_running_some_ahead() -> bool:
                states = [j.state for j in await client.jobs(limit=3)]
                return states.count("running") >= 2  # 1 slot running + 1 or 2 leased ahead

            async def one_started() -> bool:
                return agent.running == 1

            await eventually(one_running_some_ahead)
            await eventually(one_started)
            agent.drain()

            async def all_back() -> bool:
                return all(j.state == "queued" for j in await client.jobs(limit=3))

            await eventually(all_back, within_s=10)
        views = await client.jobs(limit=3)
    assert sorted(j.id for j in views) == sorted(slow)
    assert all(j.attempts == 0 for j in views)  # handed back, not failed attempts


async def test_a_worker_leases_nothing_ahead_while_jobs_are_long(tmp_path: Path) -> None:
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, slots=1) as agent,
        client_of(b) as client,
    ):
        with anyio.fail_after(30):
            await client.submit_many([_spec(SLOW)] * 3)

            async def started() -> bool:
                return agent.running == 1

            await eventually(started)
            # The first job is running; nothing is known of durations yet, so nothing is leased ahead:
            # the other two stay queued for any other worker that comes.
            states = sorted(j.state for j in await client.jobs(limit=3))
    assert states == ["queued", "queued", "running"]


def _spec(argv: list[str]) -> JobSpec:
    return JobSpec(argv=argv, max_attempts=1)

"""A broker's counts are read afresh from the store when changes of other brokers may have been missed (its
link to PostgreSQL came back). A recount that runs while this broker commits must count each of its own
changes exactly once: over, `gridd status` shows jobs that do not exist for good; short, a queue that looks
empty is not offered to its workers, and its jobs would wait for ever."""

from __future__ import annotations

from pathlib import Path

import anyio

from gridd.protocol.messages import JobSpec
from gridd.protocol.states import JobState
from tests.conftest import client_of, running_broker, running_worker

ROUNDS = 60
MAX_RECOUNTS = 10_000  # each recounting task's bound; the submits end long before


async def test_recounts_among_submits_and_holds_leave_every_count_exact(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with anyio.fail_after(60):
            to_run: list[str] = []

            async def submit_and_hold(round_: int) -> None:
                ids = await client.submit_many([JobSpec(argv=["true"], queue=f"q{round_ % 3}")] * 5)
                await client.hold(ids[0])
                to_run.extend(ids[1:])

            async def recount_until_done(done: anyio.Event) -> None:
                for _ in range(MAX_RECOUNTS):
                    if done.is_set():
                        return
                    await b.broker.recount()

            done = anyio.Event()
            async with anyio.create_task_group() as recounting:
                recounting.start_soon(recount_until_done, done)
                recounting.start_soon(recount_until_done, done)
                async with anyio.create_task_group() as tg:
                    for round_ in range(ROUNDS):
                        tg.start_soon(submit_and_hold, round_)
                done.set()
            status = await client.status()
            stored = await b.broker.store.count_by_queue()
            assert status.counts[JobState.QUEUED] == ROUNDS * 4
            assert status.counts[JobState.HELD] == ROUNDS
            assert b.broker._ledger.counts == stored
            async with running_worker(tmp_path, b.addr, slots=4, queues=["q0", "q1", "q2"]):
                views = await client.wait(to_run)
        assert {v.state for v in views} == {JobState.SUCCEEDED}

"""The event stream: snapshot then deltas, and large submissions that do not drop a reading subscriber."""

from __future__ import annotations

from pathlib import Path

import anyio

from gridd.protocol.messages import JobSpec
from tests.conftest import client_of, running_broker


async def test_a_subscriber_that_reads_gets_every_event_of_a_submit_larger_than_its_buffer(tmp_path: Path) -> None:
    """`gridd events` in one terminal survives `submit --each` of many jobs in another."""
    jobs = 5_000
    async with (
        running_broker(tmp_path, max_pending_events=1_000) as b,
        client_of(b) as watcher,
        client_of(b) as submitter,
    ):
        snapshot, events = await watcher.subscribe()
        assert snapshot.queues == {}
        seen: list[str] = []
        with anyio.fail_after(60):
            # 5,000 events would not fit 1,000 pending at once; the session moves each batch on to
            # the socket as it comes, so a subscriber that reads keeps up.
            ids: list[str] = []
            for _ in range(0, jobs, 500):
                ids += await submitter.submit_many([JobSpec(argv=["true"])] * 500)
            async for event in events:
                if event.kind == "job.submitted":
                    seen.append(event.job_id or "")
                if len(seen) == jobs:
                    break
    assert seen == ids  # every one, in order


async def test_a_snapshot_counts_jobs_per_queue_and_state_and_deltas_apply_to_it(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with anyio.fail_after(20):
            first = await client.submit(["true"], queue="a")
            await client.submit(["true"], queue="b")
            await client.hold(first)
            snapshot, events = await client.subscribe()
            assert snapshot.queues == {"a": {"queued": 0, "held": 1}, "b": {"queued": 1}}
            await client.release(first)
            event = await events.__anext__()
        assert (event.kind, event.job_id, event.previous, event.state) == ("job.released", first, "held", "queued")

"""Listing jobs: newest first, paged under the frame limit."""

from __future__ import annotations

from pathlib import Path

import anyio

from gridd.protocol.messages import JobSpec
from tests.conftest import client_of, running_broker


async def test_listing_all_jobs_pages_past_what_one_reply_may_carry(tmp_path: Path) -> None:
    """`gridd jobs --limit 0` on a big database: every job, newest first, though one reply carries 10,000."""
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with anyio.fail_after(60):
            ids = await client.submit_many([JobSpec(argv=["true"])] * 25_000)
            every = await client.jobs(limit=0)
            some = await client.jobs(limit=12_345)
    assert [j.id for j in every] == ids[::-1]
    assert [j.id for j in some] == ids[::-1][:12_345]


async def test_listing_filters_by_state_queue_group_and_together_newest_first(tmp_path: Path) -> None:
    """Each filter alone and together, on either store: the jobs that match, newest first; dependencies
    shown as given; an unknown state lists nothing."""
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with anyio.fail_after(60):
            a1 = await client.submit(["true"], queue="a")
            b1 = await client.submit(["true"], queue="b")
            a2 = await client.submit(["true"], queue="a", after=[a1, b1])
            grouped, group = await client.submit_group([JobSpec(argv=["true"], queue="b")] * 3)
            await client.cancel(b1)
            queued_a = await client.jobs(state="queued", queue="a")
            in_b = await client.jobs(queue="b")
            of_group = await client.jobs(group=group, limit=2)
            cancelled = await client.jobs(state="cancelled")
            none = await client.jobs(state="no-such-state")
            older = await client.jobs(before=a2)
            waiter = (await client.show(a2))[0]
    assert [j.id for j in queued_a] == [a1]
    assert [j.id for j in in_b] == [*grouped[::-1], b1]
    assert [j.id for j in of_group] == grouped[::-1][:2]
    assert [j.id for j in cancelled] == [a2, b1]  # a2 waited for b1: cancelled with it
    assert none == []
    assert [j.id for j in older] == [b1, a1]
    assert sorted(waiter.after, key=int) == [a1, b1]

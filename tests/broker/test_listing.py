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

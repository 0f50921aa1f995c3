"""A broker's counts are read afresh from the store when changes of other brokers may have been missed (its
link to PostgreSQL came back). A count read while this broker commits must never come out short: a queue
that looks empty is not offered to its workers, and its jobs would wait for ever."""

from __future__ import annotations

from pathlib import Path

import anyio

from gridd.protocol.states import JobState
from tests.conftest import client_of, running_broker, running_worker


async def test_a_count_read_before_a_submit_committed_and_applied_after_it_still_counts_the_job(
    tmp_path: Path,
) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with anyio.fail_after(20):
            ledger = b.broker._ledger  # the race, made certain: the count is read, then the submit lands
            journal = ledger.start_recount()
            read_before = await b.broker.store.count_by_queue()
            job = await client.submit(["true"])
            ledger.recount(journal, read_before)
            assert (await client.status()).counts[JobState.QUEUED] == 1
            async with running_worker(tmp_path, b.addr, slots=1):
                [view] = await client.wait([job])
        assert view.state == JobState.SUCCEEDED

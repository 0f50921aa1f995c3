"""A PostgreSQL failover is survived like a broker restart: the broker's URL names a primary and its
streaming standby (libpq's multi-host URL, target_session_attrs=read-write); the primary dies as with a
power cut, the standby is promoted, and the broker goes on through it: nothing acknowledged is lost (the
standby confirmed each commit: synchronous replication) and the next requests succeed without a restart."""

from __future__ import annotations

from pathlib import Path

import anyio

from gridd.protocol.messages import JobSpec
from gridd.protocol.states import JobState
from tests.conftest import client_of, running_broker
from tests.pgserver import PgServer
from tests.polling import wait_until


def _streaming(primary: PgServer) -> bool:
    return primary.psql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == "1"


async def test_the_broker_goes_on_through_a_promoted_standby_and_loses_no_acknowledged_job(tmp_path: Path) -> None:
    with PgServer(fsync=False) as primary:
        primary.create_database("grid")
        with PgServer(fsync=False, standby_of=primary) as standby:
            wait_until(lambda: _streaming(primary), 30, "the standby to stream from the primary")
            # From now on a commit returns only once the standby has it.
            primary.psql("ALTER SYSTEM SET synchronous_standby_names = '*'")
            primary.psql("SELECT pg_reload_conf()")
            url = (
                f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/grid"
                "?target_session_attrs=read-write"
            )
            async with running_broker(tmp_path, store=url) as b, client_of(b) as client:
                with anyio.fail_after(90):
                    before = await client.submit_many([JobSpec(argv=["true"])] * 50)
                    await client.hold(before[0])
                    primary.kill()
                    await anyio.to_thread.run_sync(standby.promote)
                    after = await client.submit_many([JobSpec(argv=["true"])] * 50)  # through the new primary
                    views = await client.jobs(limit=0)
                    status = await client.status()
    states = {v.id: v.state for v in views}
    assert set(before) | set(after) == set(states)
    assert len(set(before) | set(after)) == 100  # new ids follow the old ones: none given twice
    assert states[before[0]] == JobState.HELD
    assert status.counts[JobState.QUEUED] == 99

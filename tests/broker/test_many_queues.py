"""Matching cost does not grow with the number of queues ever seen: a worker's lease request looks only at
the lanes of the queues it serves that have queued jobs, and the lanes of queues with no job left to lease
are dropped from memory and from the lanes table (a retried job brings its lane back). Nor with the number
of idle workers: a dispatch pass passes over the waiting requests whose queues have nothing queued."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import psycopg

from gridd.client.connection import open_connection
from gridd.protocol.messages import JobSpec, RegisterWorker, RequestJobs
from tests.conftest import STORE, TOKEN, client_of, running_broker

QUEUES = 20_000


def lanes_in_table(data_dir: Path) -> int:
    """Rows of the lanes table, read beside the broker (its SQLite file, or the test's PostgreSQL)."""
    if STORE["url"] is not None:
        with psycopg.connect(STORE["url"]) as pg:
            return int(pg.execute("SELECT COUNT(*) FROM lanes").fetchone()[0])  # type: ignore[index]
    with sqlite3.connect(f"file:{data_dir / 'gridd.db'}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM lanes").fetchone()[0])


async def test_a_lease_on_default_looks_at_its_own_lanes_only_and_idle_lanes_are_dropped(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        broker = b.broker
        with anyio.fail_after(120):
            # 20,000 queues, each with a job in a task lane (so each is a lane of its own), all cancelled.
            specs = [JobSpec(argv=["true"], queue=f"q{i}", requires={"gpu": "yes"}) for i in range(QUEUES)]
            ids = await client.submit_many(specs)
            await client.control("cancel", ids)
            assert lanes_in_table(b.data_dir) == QUEUES
            job_id = await client.submit(["true"], requires={"gpu": "yes"})
            async with open_connection(b.addr, TOKEN, role="worker", name="w") as conn:
                await conn.request(
                    lambda rid: RegisterWorker(rid=rid, host="h", slots=1, queues=["default"], tags={"gpu": "yes"})
                )
                leased = await conn.request(lambda rid: RequestJobs(rid=rid, max_jobs=1))
                assert [j.job_id for j in leased.jobs] == [job_id]
                # One pass, one request, its worker's lanes: 'default' plain and 'default' gpu=yes. Not 20,001.
                assert broker.lanes.scanned <= 2
                assert broker.dispatcher.lanes_considered <= 2

                assert await broker.drop_idle_lanes() == QUEUES
                assert len(broker.lanes) == 1  # ('default', ';gpu=yes'): its job runs
                assert lanes_in_table(b.data_dir) == 1

                # A retried job brings its queue's lane back, and is leased from it.
                await client.retry(ids[7])
                assert "q7" in broker.lanes.queues() and lanes_in_table(b.data_dir) == 2
            async with open_connection(b.addr, TOKEN, role="worker", name="w7") as conn:
                await conn.request(
                    lambda rid: RegisterWorker(rid=rid, host="h", slots=1, queues=["q7"], tags={"gpu": "yes"})
                )
                leased = await conn.request(lambda rid: RequestJobs(rid=rid, max_jobs=1))
                assert [j.job_id for j in leased.jobs] == [ids[7]]


IDLE_WORKERS = 50


async def test_workers_waiting_on_an_empty_queue_are_passed_over_while_another_queue_runs(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client, anyio.create_task_group() as tg:
        dispatcher = b.broker.dispatcher

        async def idle(n: int) -> None:
            async with open_connection(b.addr, TOKEN, role="worker", name=f"idle-{n}") as conn:
                await conn.request(lambda rid: RegisterWorker(rid=rid, host="h", slots=1, queues=["empty"]))
                await conn.send(RequestJobs(rid=2**31, max_jobs=1))  # a long poll, never answered
                await anyio.sleep_forever()

        for n in range(IDLE_WORKERS):
            tg.start_soon(idle, n)
        with anyio.fail_after(30):
            while dispatcher.waiting < IDLE_WORKERS:
                await anyio.sleep(0.01)
            async with open_connection(b.addr, TOKEN, role="worker", name="busy") as conn:
                await conn.request(lambda rid: RegisterWorker(rid=rid, host="h", slots=1, queues=["busy"]))
                before = dispatcher.requests_read
                for _ in range(5):
                    job_id = await client.submit(["true"], queue="busy")
                    leased = await conn.request(lambda rid: RequestJobs(rid=rid, max_jobs=1))
                    assert [j.job_id for j in leased.jobs] == [job_id]
                # The busy worker's request, in each pass that had its job to lease: not the 50 idle ones too.
                assert dispatcher.requests_read - before < IDLE_WORKERS
        tg.cancel_scope.cancel()

"""Retention: finished jobs older than --keep are removed with their attempts, output, results and the blobs
only they refer to; newer and unfinished ones stay, counts (status and the event stream's) stay exact, a job
waiting on a purged dependency is not broken, bundle blobs stay, and ids are never given out twice."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest

from gridd.client import blobs, bundles
from gridd.protocol.errors import UnknownJob
from gridd.protocol.messages import JobSpec, TaskCall
from gridd.tui.model.counts import CountBook
from tests.clock import FakeClock
from tests.conftest import TOKEN, client_of, running_broker, running_worker
from tests.polling import eventually
from tests.store_rows import stored
from tests.tasks.sample import echo

DAY_S = 86400.0
MIB = 1024 * 1024


def blob_ids(data_dir: Path) -> set[str]:
    return {str(r[0]) for r in stored(data_dir, "SELECT id FROM blobs")}


def table_count(data_dir: Path, table: str) -> int:
    return int(stored(data_dir, f"SELECT COUNT(*) FROM {table}")[0][0])  # noqa: S608 - a test's own names


async def test_finished_jobs_past_keep_go_with_their_output_and_blobs_and_the_rest_stays(tmp_path: Path) -> None:
    clock = FakeClock()
    shared = os.urandom(2 * MIB)  # a bundle's file, and (as raw bytes) a task job's arguments blob
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "data.bin").write_bytes(shared)
    async with (
        running_broker(tmp_path, clock=clock) as b,
        running_worker(tmp_path, b.addr, tasks=["tests.tasks.sample"]),
        client_of(b) as client,
    ):
        with anyio.fail_after(60):
            conn = client.connection
            # Old: one of each finished state, with output, a task job with blobs both ways, and a task
            # job whose arguments blob is also a bundle's file.
            done = await client.submit(["sh", "-c", "echo old output; echo old error >&2"])
            failed = await client.submit(["false"], max_attempts=1)
            # Scheduled an hour ahead (of the broker's clock): held before a worker may take it.
            (held,) = await client.submit_many([JobSpec(argv=["true"], start_at_ms=clock.now_ms() + 3_600_000)])
            await client.hold(held)
            cancelled = await client.submit(["true"], queue="nobody-serves-this")
            await client.cancel(cancelled)
            task = await client.submit_task(echo, os.urandom(MIB + 1000))  # args and result past INLINE_BYTES
            await bundles.push(conn, "code", tmp_path / "code")
            shared_blob = await blobs.upload(conn, shared)
            (garbled,) = await client.submit_many(
                [
                    JobSpec(
                        argv=["tests.tasks.sample:echo"],
                        task=TaskCall(name="tests.tasks.sample:echo", args_blob=shared_blob),
                        max_attempts=1,
                    )
                ]
            )
            # Waits for `done` (which will be purged) and `held` (which will not): still waiting after the purge.
            waiter = await client.submit(["true"], after=[done, held])
            await client.wait([done, failed, cancelled, task.id, garbled])
            old_blobs = blob_ids(b.data_dir) - {shared_blob}
            assert len(old_blobs) == 2  # the task's arguments and its result

            clock.advance(31 * DAY_S)
            new = await client.submit(["echo", "new"])
            await client.wait([new])

            snapshot, events = await client.subscribe()
            book = CountBook()
            book.reset(snapshot.queues)
            assert await client.purge() == 5
            assert await client.purge() == 0

            for job_id in (done, failed, cancelled, task.id, garbled):
                with pytest.raises(UnknownJob):
                    await client.show(job_id)
                with pytest.raises(UnknownJob):
                    await client.output(job_id)
            assert {j.id for j in await client.jobs(limit=0)} == {held, waiter, new}
            assert (await client.output(new))[0] == b"new\n"
            assert blob_ids(b.data_dir) == {shared_blob}  # the bundle still names it
            assert table_count(b.data_dir, "attempts") == 1 and table_count(b.data_dir, "outputs") == 2

            # Counts: status, and a dashboard's book fed by the events, agree with the store's.
            stored = await b.broker.store.count_by_queue()
            status = (await client.status()).counts
            assert {s: n for s, n in status.items() if n} == {"succeeded": 1, "held": 1, "waiting": 1}
            assert {q: {s: n for s, n in c.items() if n} for q, c in b.broker.counts.items()} == stored

            async def book_caught_up() -> bool:
                with anyio.move_on_after(0.05):
                    async for event in events:
                        book.apply(event)
                return {
                    q: {s: n for s, n in c.items() if n} for q, c in book._counts.items() if any(c.values())
                } == stored

            await eventually(book_caught_up)

            # The waiting job's purged dependency had succeeded: it runs once its other one does.
            await client.release(held)
            (view,) = await client.wait([waiter])
            assert view.state == "succeeded"


async def test_the_broker_purges_on_its_own_and_never_gives_an_id_out_twice(tmp_path: Path) -> None:
    clock = FakeClock()
    async with (
        running_broker(tmp_path, clock=clock, keep_s=3600, maintain_every_s=0.05) as b,
        running_worker(tmp_path, b.addr),
        client_of(b) as client,
    ):
        with anyio.fail_after(30):
            ids = [await client.submit(["true"]) for _ in range(3)]
            await client.wait(ids)
            clock.advance(3601)

            async def purged() -> bool:
                return await client.jobs(limit=0) == []

            await eventually(purged)
            assert sum((await client.status()).counts.values()) == 0
            assert b.broker.counts == {}
    async with running_broker(tmp_path, clock=clock) as b, client_of(b) as client:
        assert int(await client.submit(["true"])) == int(ids[-1]) + 1


async def test_gridd_show_of_a_purged_job_says_unknown_job_and_exits_1(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        job_id = await client.submit(["true"], queue="q")
        await client.cancel(job_id)
        assert await client.purge(older_than_s=0) == 1
        result = await anyio.run_process(
            [sys.executable, "-m", "gridd", "show", job_id, "--broker", b.addr],
            env={**os.environ, "GRIDD_TOKEN": TOKEN},
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.decode().strip() == f"gridd: no job has id {job_id!r}"

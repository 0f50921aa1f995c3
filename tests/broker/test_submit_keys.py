"""Idempotent submit on a real broker: a key names one submit call per credential. The same key with the
same request again returns the first's ids and makes no job (a group: the same group and ids, also when
only its first chunk had been made); with another request it is refused, naming the key and the first's
jobs, and makes nothing; once its TTL has passed (fake clock) the key makes jobs again, and retention
removes it; two credentials' keys never meet."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import psycopg
import pytest
import structlog

from gridd.broker.maintenance import Maintenance
from gridd.client import connect
from gridd.client.submits import CHUNK_BYTES, chunks
from gridd.protocol.errors import InvalidRequest, KeyConflict
from gridd.protocol.messages import JobSpec
from tests.clock import FakeClock
from tests.conftest import STORE, client_of, running_broker, running_worker
from tests.tasks.sample import size_of

MIB = 1024 * 1024
Q = "nobody-serves-this"  # no worker: the jobs stay queued


def key_rows(data_dir: Path) -> int:
    """How many keys the broker's store holds, read beside it (its SQLite file, or the test's PostgreSQL)."""
    if STORE["url"] is not None:
        with psycopg.connect(STORE["url"]) as pg:
            return int(pg.execute("SELECT COUNT(*) FROM submit_keys").fetchone()[0])  # type: ignore[index]
    with sqlite3.connect(f"file:{data_dir / 'gridd.db'}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM submit_keys").fetchone()[0])


async def test_the_same_key_and_request_again_returns_the_first_job_and_makes_none(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with anyio.fail_after(30):
            first = await client.submit(["echo", "once"], queue=Q, env={"A": "1", "B": "2"}, key="nightly-1")
            # The same request (its env in another order is the same env), over another connection.
            async with client_of(b) as again:
                retried = await again.submit(["echo", "once"], queue=Q, env={"B": "2", "A": "1"}, key="nightly-1")
            assert retried == first
            assert [j.id for j in await client.jobs(queue=Q)] == [first]
            assert b.broker.submitted == 1
            # Without a key, or under another, the same request makes a job as always.
            other = await client.submit(["echo", "once"], queue=Q, env={"A": "1", "B": "2"}, key="nightly-2")
            plain = await client.submit(["echo", "once"], queue=Q, env={"A": "1", "B": "2"})
            assert len({first, other, plain}) == 3


async def test_the_same_key_with_another_request_is_refused_naming_the_first_and_makes_nothing(
    tmp_path: Path,
) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with anyio.fail_after(30):
            first = await client.submit(["echo", "a"], queue=Q, key="k1")
            with structlog.testing.capture_logs() as logs:
                for changed in (
                    {"argv": ["echo", "b"]},
                    {"argv": ["echo", "a"], "priority": 5},
                    {"argv": ["echo", "a"], "after": [first]},
                ):
                    kwargs = {"queue": Q, "key": "k1", **changed}
                    with pytest.raises(
                        KeyConflict, match=rf"^key k1 was used for job {first} with a different request"
                    ):
                        await client.submit(**kwargs)  # type: ignore[arg-type]
            assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["submit.key_conflict"] * 3
            assert [j.id for j in await client.jobs(queue=Q)] == [first]
            # A group's key names the group.
            ids, group = await client.submit_group([JobSpec(argv=["echo", str(i)], queue=Q) for i in range(3)], key="g")
            with pytest.raises(KeyConflict, match=rf"^key g was used for group {group} with a different request"):
                await client.submit_group([JobSpec(argv=["echo", "x"], queue=Q)], key="g")
            assert len(await client.jobs(queue=Q)) == 4


async def test_a_key_is_kept_for_its_ttl_then_makes_jobs_again_and_retention_removes_it(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_broker(tmp_path, clock=clock) as b, client_of(b) as client:
        with anyio.fail_after(30):
            first = await client.submit(["true"], queue=Q, key="short", key_ttl_s=120)
            week = await client.submit(["true"], queue=Q, key="week")  # the default TTL: 7 days
            clock.advance(119)
            assert await client.submit(["true"], queue=Q, key="short") == first
            clock.advance(2)
            # Expired: the key may be used again, even before retention ran, and for another request.
            second = await client.submit(["false"], queue=Q, key="short", key_ttl_s=120)
            assert second not in (first, week)
            assert await client.submit(["false"], queue=Q, key="short") == second  # the TTL is not the request
            clock.advance(6 * 86400)
            assert await client.submit(["true"], queue=Q, key="week") == week
            assert await b.broker.forget_keys() == 1  # "short" (its second life) is past its two minutes
            assert key_rows(b.data_dir) == 1
            clock.advance(86400)
            await Maintenance(b.broker, every_s=60).once()  # the broker's round of every minute
            assert key_rows(b.data_dir) == 0
            third = await client.submit(["true"], queue=Q, key="week")
            assert third not in (first, second, week)
            assert len(await client.jobs(queue=Q)) == 4


async def test_keys_of_two_credentials_never_meet(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as admin:
        with anyio.fail_after(30):
            ann, _ = await admin.create_token("ann", "submit")
            bob, _ = await admin.create_token("bob", "submit")
            async with connect(b.addr, ann) as a, connect(b.addr, bob) as o:
                hers = await a.submit(["echo", "ann"], queue=Q, key="deploy")
                # Bob's key of the same name neither conflicts with Ann's nor finds her job.
                his = await o.submit(["echo", "bob"], queue=Q, key="deploy")
                assert his != hers
                assert await o.submit(["echo", "bob"], queue=Q, key="deploy") == his
                assert await a.submit(["echo", "ann"], queue=Q, key="deploy") == hers
            # The admin's key of that name is the admin's own, too.
            mine = await admin.submit(["echo", "ann"], queue=Q, key="deploy")
            assert mine not in (hers, his)
            assert len(await admin.jobs(queue=Q)) == 3


async def test_a_large_group_under_a_key_is_made_once_even_when_only_its_first_chunk_was(tmp_path: Path) -> None:
    # About 6 MiB of specs: they travel in two requests. The first is sent alone (its submitter then
    # lost its connection); the retry of the whole submit finds that part and makes only the rest.
    specs = [JobSpec(argv=["echo", str(i), "x" * 2000], queue=Q) for i in range(3000)]
    parts = chunks(specs)
    assert len(parts) == 2 and sum(len(p) for p in parts) == len(specs)
    assert sum(len(s.argv[2]) for s in parts[0]) <= CHUNK_BYTES
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with anyio.fail_after(120):
            head, group = await client.submit_chunk(parts[0], new_group=True, key="big", key_part=0)
            assert group is not None
            ids, again = await client.submit_group(specs, key="big")
            assert again == group and ids[: len(head)] == head and len(ids) == len(specs)
            assert await client.submit_group(specs, key="big") == (ids, group)
            assert len(await client.jobs(group=group, limit=0)) == len(specs)
            # A later part must add to the group its first part made.
            _, other = await client.submit_group([JobSpec(argv=["true"], queue=Q)])
            with pytest.raises(KeyConflict, match=f"^key big was used for group {group} with a different request"):
                await client.submit_chunk(parts[1], group=other, key="big", key_part=1)
            _, fresh = await client.submit_chunk(parts[0][:1], new_group=True, key="big2", key_part=0)
            with pytest.raises(
                KeyConflict, match=f"^key big2 was used for group {fresh} and this request adds to group {other}"
            ):
                await client.submit_chunk(parts[1][:1], group=other, key="big2", key_part=1)
            assert len(await client.jobs(group=other)) == 1


async def test_a_key_or_ttl_out_of_bounds_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with anyio.fail_after(30):
            for key, ttl, why in (
                ("", None, "cannot be empty"),
                ("x" * 201, None, "at most 200 characters"),
                ("has space", None, "printable ASCII"),
                ("café", None, "printable ASCII"),
                ("k", 59.0, "between 1 minute and 365 days"),
                ("k", 366 * 86400.0, "between 1 minute and 365 days"),
            ):
                with pytest.raises(InvalidRequest, match=why):
                    await client.submit(["true"], queue=Q, key=key, key_ttl_s=ttl)
            assert await client.jobs(queue=Q) == []
            assert await client.submit(["true"], queue=Q, key="x" * 200, key_ttl_s=60) != ""


async def test_a_task_call_under_a_key_runs_once_and_its_retry_reads_the_same_result(tmp_path: Path) -> None:
    # The route README gives for tasks: the call's spec submitted under a key; a large argument travels as
    # a blob named by its content, so the retry's request is the same.
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, tasks=["tests.tasks.sample"]),
        client_of(b) as client,
    ):
        with anyio.fail_after(60):
            ids = []
            for _ in range(2):
                call = await client.task_call(size_of.name, size_of.encode_call((b"x" * (2 * MIB),), {}))
                (job,) = await client.submit_many([size_of.spec(call)], key="size-once")
                ids.append(job)
                assert await client.handle(job, size_of).result() == 2 * MIB
            assert ids[0] == ids[1]
            assert len(await client.jobs()) == 1

"""A job's size is bounded (argv+env, stdin) and refused with one line saying the size and the limit; a
listing is paged by bytes as well as rows, so no job, however large, can break `gridd jobs` for everyone."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from gridd.config import BrokerConfig, WorkerConfig
from gridd.protocol.errors import ErrorCode, PayloadTooLarge
from gridd.protocol.frames import MAX_FRAME_BYTES, encode_frame
from gridd.protocol.limits import LIST_REPLY_BYTES, MAX_COMMAND_BYTES, MAX_OUTPUT_BYTES, MAX_STDIN_BYTES
from gridd.protocol.messages import Error, JobsListed, JobSpec, ListJobs, SubmitJobs
from tests.broker.test_wire_safety import raw
from tests.conftest import client_of, running_broker

KIB = 1024
MIB = 1024 * KIB


def command_of(size: int) -> list[str]:
    """An argv of about `size` bytes (as execve counts them)."""
    return ["echo", "x" * (size - 6)]


async def test_a_job_past_the_command_limit_is_refused_by_the_broker_and_nothing_is_stored(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b:
        conn = await raw(b)
        await conn.handshake()
        big = JobSpec(argv=command_of(300 * KIB))
        await conn.send(encode_frame(SubmitJobs(rid=1, jobs=[JobSpec(argv=["true"]), big])))
        reply = await conn.receive()
        assert isinstance(reply, Error) and reply.code == ErrorCode.PAYLOAD_TOO_LARGE, reply
        assert "job 2 of 2: its command and environment take 300 KiB" in reply.message
        assert "the limit is 256 KiB" in reply.message
        async with client_of(b) as client:
            assert await client.jobs(limit=0) == []
            assert sum((await client.status()).counts.values()) == 0


async def test_jobs_each_under_the_limit_are_taken_whatever_they_weigh_together(tmp_path: Path) -> None:
    """The limit is each job's: a submit whose jobs pass it only together (the quick check of the whole
    request fails, each job's own count passes) makes them all, on the client and on the broker."""
    async with running_broker(tmp_path) as b, client_of(b) as client:
        specs = [JobSpec(argv=command_of(100 * KIB)), JobSpec(argv=["true"]), JobSpec(argv=command_of(200 * KIB))]
        ids = await client.submit_many(specs)
        assert len(ids) == 3
        assert [len(j.argv[1]) for j in reversed(await client.jobs(limit=0)) if len(j.argv) > 1] == [
            100 * KIB - 6,
            200 * KIB - 6,
        ]


async def test_the_client_refuses_early_what_the_broker_would(tmp_path: Path) -> None:
    """Even past the frame limit: the client says the size and the limit instead of breaking its connection."""
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with pytest.raises(PayloadTooLarge, match=r"the job's command and environment take 20\.0 MiB"):
            await client.submit(["true"], env={"BIG": "x" * (20 * MIB)})
        with pytest.raises(PayloadTooLarge, match=r"standard input .* takes 5\.0 MiB .* the limit is 4\.0 MiB"):
            await client.submit(["cat"], stdin=b"x" * (5 * MIB))
        # Right at the limit is fine, and the connection is still good.
        job_id = await client.submit(command_of(MAX_COMMAND_BYTES))
        assert [j.id for j in await client.jobs()] == [job_id]


async def test_jobs_near_the_limit_are_listed_in_pages_under_the_frame_limit(tmp_path: Path) -> None:
    """Three jobs of 7 MiB each (the broker allows 8 MiB here): one reply holding them would pass the
    16 MiB frame limit; the listing pages by bytes and every job is listed, newest first."""
    async with running_broker(tmp_path, max_command_bytes=8 * MIB) as b, client_of(b) as client:
        with anyio.fail_after(60):
            ids = [await client.submit(command_of(7 * MIB)) for _ in range(3)]
            small = await client.submit(["true"])
            every = await client.jobs(limit=0)
            some = await client.jobs(limit=2)
            conn = await raw(b)
            await conn.handshake()
            await conn.send(encode_frame(ListJobs(rid=1, limit=0)))
            page = await conn.receive()
    assert [j.id for j in every] == [small, *ids[::-1]]
    assert [j.argv[1][:3] for j in every[1:]] == ["xxx"] * 3
    assert [j.id for j in some] == [small, ids[2]]
    assert isinstance(page, JobsListed) and page.more
    # A page stops before the job that would take it past LIST_REPLY_BYTES (one job alone may).
    assert [j.id for j in page.jobs] == [small]
    assert LIST_REPLY_BYTES + 8 * MIB < MAX_FRAME_BYTES


def test_the_settings_default_to_the_protocols_limits() -> None:
    broker = BrokerConfig()
    assert (broker.max_command_bytes, broker.max_stdin_bytes) == (MAX_COMMAND_BYTES, MAX_STDIN_BYTES)
    assert broker.max_output_bytes == WorkerConfig().max_output_bytes == MAX_OUTPUT_BYTES

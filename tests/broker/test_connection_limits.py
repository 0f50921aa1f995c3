"""Connections a broker does not keep for ever: strangers that never finish the handshake, too many of
them from one address or in all, and authenticated clients that went quiet. Real broker, real sockets."""

from __future__ import annotations

import time
from typing import Any

import anyio

from gridd.client import connect
from gridd.protocol.errors import ConnectionLost, ErrorCode
from gridd.protocol.frames import encode_frame
from gridd.protocol.messages import GetStatus, JobsFinished, StatusReported, WaitJobs, Welcome
from tests.broker.test_wire_safety import Raw, closing_error, raw, still_serves
from tests.conftest import TOKEN, BrokerHandle, client_of, running_broker, tls_connect


async def raw_from(handle: BrokerHandle, source: str) -> Raw:
    """A raw connection from another loopback address (all of 127/8 is this machine)."""
    with anyio.fail_after(10):
        return Raw(await tls_connect(handle.broker.port, local_host=source))


async def test_a_connection_that_sends_nothing_is_closed_within_the_handshake_timeout(tmp_path: Any) -> None:
    async with running_broker(tmp_path) as b:
        silent = await raw(b)
        started = time.monotonic()
        assert await silent.until_closed() == []  # Raw.receive fails the test after 10 s per frame
        assert time.monotonic() - started < 5.0 + 2.0
        await still_serves(b)


async def test_strangers_past_the_cap_per_address_are_refused_at_once_and_other_addresses_are_served(
    tmp_path: Any,
) -> None:
    async with running_broker(tmp_path) as b:
        crowd = [await raw_from(b, "127.0.0.2") for _ in range(32)]  # the default cap per address
        with anyio.fail_after(2):  # at once, not after the handshake timeout
            late = await raw_from(b, "127.0.0.2")
            assert closing_error(await late.until_closed()).code == ErrorCode.TOO_MANY_CONNECTIONS
        # Someone else (another address) is not held up by that crowd.
        other = await raw_from(b, "127.0.0.3")
        assert isinstance(await other.handshake(), Welcome)
        await still_serves(b)
        for conn in crowd:
            await conn.stream.aclose()


async def test_strangers_past_the_total_cap_are_refused_and_an_authenticated_peer_no_longer_counts(
    tmp_path: Any,
) -> None:
    async with running_broker(tmp_path, max_unauthenticated=4) as b:
        first = await raw_from(b, "127.0.0.2")
        assert isinstance(await first.handshake(), Welcome)  # authenticated: it leaves the count
        crowd = [await raw_from(b, f"127.0.0.{3 + i}") for i in range(4)]
        late = await raw_from(b, "127.0.0.9")
        assert closing_error(await late.until_closed()).code == ErrorCode.TOO_MANY_CONNECTIONS
        with anyio.fail_after(5):  # gridd's own client says so: a connection error, exit 3 in the CLI
            try:
                async with connect(f"127.0.0.1:{b.broker.port}", TOKEN):
                    raise AssertionError("the client was let in past the cap")
            except ConnectionLost as exc:
                assert "too many connections" in str(exc) or "closed" in str(exc)
        await first.send(encode_frame(GetStatus(rid=7)))
        assert isinstance(await first.receive(), StatusReported)
        for conn in crowd:
            await conn.stream.aclose()
        await still_serves(b)


async def test_an_authenticated_client_that_sends_nothing_is_closed_after_the_idle_timeout(tmp_path: Any) -> None:
    async with running_broker(tmp_path, idle_timeout_s=1.0) as b:
        quiet = await raw(b)
        welcome = await quiet.handshake()
        assert isinstance(welcome, Welcome) and welcome.idle_timeout_s == 1.0
        started = time.monotonic()
        assert await quiet.until_closed() == []
        assert 1.0 <= time.monotonic() - started < 1.0 + 3.0


async def test_a_client_waiting_on_a_long_poll_is_not_idle(tmp_path: Any) -> None:
    """`gridd wait` sends nothing while it waits: its connection stays open past the idle timeout."""
    async with running_broker(tmp_path, idle_timeout_s=0.5) as b, client_of(b) as other:
        job = await other.submit(["true"])  # no worker: it stays queued
        waiter = await raw(b)
        assert isinstance(await waiter.handshake(), Welcome)
        await waiter.send(encode_frame(WaitJobs(rid=1, job_ids=[job])))
        with anyio.move_on_after(2.0):  # four idle timeouts: nothing arrives, and no close
            frame = await waiter.receive()
            raise AssertionError(f"the waiting client got {frame!r}")
        await other.cancel(job)
        finished = await waiter.receive()
        assert isinstance(finished, JobsFinished) and finished.rid == 1


async def test_gridd_clients_keep_an_idle_connection_open(tmp_path: Any) -> None:
    """A program that holds a connection between two requests is not cut off: the client pings."""
    async with running_broker(tmp_path, idle_timeout_s=0.6) as b, client_of(b) as client:
        await anyio.sleep(2.0)  # idle for more than three idle timeouts: the behaviour under test
        status = await client.status()
        assert status.workers == 0

"""A newer client and an older broker: the broker announces the features it knows in its Welcome, and the
client refuses, before sending, a request using one it did not announce, since an older broker would
silently ignore the field (run a delayed job at once, make a second job for a retried keyed submit).

The older broker is scripted on a real socket (127.0.0.1, port 0): it speaks the handshake, sends a
Welcome without features (as a broker from before them does) and records every request it receives."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketStream

from gridd.client import Client, connect
from gridd.protocol import features
from gridd.protocol.errors import BrokerTooOld
from gridd.protocol.frames import FrameDecoder, encode_frame
from gridd.protocol.handshake import NEED_DATA, Accept, BrokerHandshake, HelloReceived
from gridd.protocol.messages import JobsAccepted, JobSpec, PeerMessage, Ping, Pong, SubmitJobs, Welcome
from gridd.protocol.states import JobState
from tests.conftest import TOKEN, client_of, running_broker

OLD_WELCOME = Welcome(broker_version="0.old", lease_ttl_s=30.0, heartbeat_s=5.0)  # no `features`


async def _older_broker(stream: SocketStream, received: list[object]) -> None:
    """Welcome anyone without features; record each request; accept a submit, answer anything else Pong."""
    handshake = BrokerHandshake(PeerMessage)
    async with stream:
        while (event := handshake.next_event()) is NEED_DATA:
            handshake.receive_data(await stream.receive())
        assert isinstance(event, HelloReceived)
        decision = handshake.authenticated(OLD_WELCOME)
        assert isinstance(decision, Accept)
        await stream.send(decision.data)
        decoder: FrameDecoder[object] = handshake.decoder  # type: ignore[assignment]
        pending: list[object] = list(handshake.trailing)
        while True:
            for request in pending:
                received.append(request)
                rid = request.rid  # type: ignore[attr-defined]
                if isinstance(request, SubmitJobs):
                    reply: object = JobsAccepted(rid=rid, job_ids=[f"j{len(received)}"])
                else:
                    reply = Pong(rid=rid)
                await stream.send(encode_frame(reply))  # type: ignore[arg-type]
            try:
                pending = list(decoder.feed(await stream.receive()))
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return


@asynccontextmanager
async def older_broker() -> AsyncIterator[tuple[str, list[object]]]:
    """The address of a scripted older broker, and the list of requests it received."""
    received: list[object] = []
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, lambda s: _older_broker(s, received))
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        yield f"127.0.0.1:{port}", received
        tg.cancel_scope.cancel()


async def _refused(use: Callable[[Client], Awaitable[object]]) -> tuple[BrokerTooOld, list[object], str]:
    async with older_broker() as (addr, received):
        with anyio.fail_after(10):
            async with connect(addr, TOKEN, insecure=True) as client:
                assert client.connection.welcome.features == []
                with pytest.raises(BrokerTooOld) as refused:
                    await use(client)
                # A request after it: the connection is fine, and the broker received only that.
                assert isinstance(await client.connection.request(lambda rid: Ping(rid=rid)), Pong)
    return refused.value, received, addr


async def test_a_real_broker_announces_every_feature_and_takes_delayed_keyed_and_retried_submits(
    tmp_path: Path,
) -> None:
    async with running_broker(tmp_path) as broker, client_of(broker) as client:
        assert set(client.connection.welcome.features) == features.KNOWN
        at = datetime.now() + timedelta(hours=1)  # noqa: DTZ005 - `at` is a naive local time
        delayed = await client.submit(["true"], at=at, key="k-1")
        assert await client.submit(["true"], at=at, key="k-1") == delayed  # a retried keyed submit: one job
        view, _ = await client.show(delayed)
        assert view.state == JobState.SCHEDULED and view.start_at_ms is not None
        (retried,) = await client.submit_many([JobSpec(argv=["true"], retry_on=["exit:75"], retry_delay_s=1)])
        view, _ = await client.show(retried)
        assert (view.retry_on, view.retry_delay_s) == (["exit:75"], 1)


@pytest.mark.parametrize(
    ("use", "asked"),
    [
        (lambda c: c.submit(["true"], delay_s=60), "--at/--in"),
        (lambda c: c.submit(["true"], key="nightly-1"), "--key"),
        (lambda c: c.submit_many([JobSpec(argv=["true"], retry_on=["exit:75"])]), "--retry-on/--retry-delay"),
        (lambda c: c.submit_many([JobSpec(argv=["true"], retry_delay_s=5)]), "--retry-on/--retry-delay"),
        (lambda c: c.submit_many([JobSpec(argv=["true"]), JobSpec(argv=["true"], start_at_ms=1)]), "--at/--in"),
        (lambda c: c.add_schedule("nightly", "@daily", ["true"]), "schedule add"),
    ],
)
async def test_an_older_broker_is_sent_nothing_that_uses_a_feature_it_did_not_announce(
    use: Callable[[Client], Awaitable[object]], asked: str
) -> None:
    refused, received, addr = await _refused(use)
    assert str(refused) == (
        f"the broker at {addr} does not know {asked} (it is older than this gridd); "
        "upgrade the broker, or submit without it"
    )
    assert [type(r).__name__ for r in received] == ["Ping"]  # nothing of the refused request


async def test_a_plain_submit_to_an_older_broker_still_works() -> None:
    async with older_broker() as (addr, received):
        with anyio.fail_after(10):
            async with connect(addr, TOKEN, insecure=True) as client:
                job_id = await client.submit(["true"], queue="q", priority=3)
    assert job_id == "j1"
    (request,) = received
    assert isinstance(request, SubmitJobs) and request.jobs == [JobSpec(argv=["true"], queue="q", priority=3)]


async def test_the_cli_shows_the_one_line_and_exits_1(tmp_path: Path) -> None:
    async with older_broker() as (addr, received):
        env = {**os.environ, "GRIDD_BROKER": addr, "GRIDD_TOKEN": TOKEN, "GRIDD_INSECURE": "1"}
        with anyio.fail_after(60):
            done = await anyio.run_process(
                [sys.executable, "-m", "gridd", "submit", "--in", "90m", "--", "true"], env=env, check=False
            )
    assert done.returncode == 1
    assert done.stderr.decode().strip() == (
        f"gridd: the broker at {addr} does not know --at/--in (it is older than this gridd); "
        "upgrade the broker, or submit without it"
    )
    assert received == []

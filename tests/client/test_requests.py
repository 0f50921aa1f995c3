"""A request is typed end to end: the client returns the reply its request names, and refuses any other.
The broker here is scripted on a real socket (127.0.0.1, port 0), because a real one never answers
wrongly; it speaks the handshake through the protocol's own BrokerHandshake."""

from __future__ import annotations

from collections.abc import Callable

import anyio
from anyio.abc import SocketStream

from gridd.client.connection import open_connection
from gridd.protocol.errors import BadFrame, GriddError
from gridd.protocol.frames import FrameDecoder, encode_frame
from gridd.protocol.handshake import NEED_DATA, Accept, BrokerHandshake, HelloReceived
from gridd.protocol.messages import (
    GetStatus,
    PeerMessage,
    Ping,
    Pong,
    Reply,
    StatusReported,
    Welcome,
)
from tests.conftest import TOKEN

WELCOME = Welcome(broker_version="test", lease_ttl_s=30.0, heartbeat_s=5.0)


async def _scripted_broker(stream: SocketStream, answer: Callable[[GetStatus | Ping], Reply]) -> None:
    """Welcome anyone, then answer each request with `answer(request)`."""
    handshake = BrokerHandshake(PeerMessage)
    async with stream:
        while (event := handshake.next_event()) is NEED_DATA:
            handshake.receive_data(await stream.receive())
        assert isinstance(event, HelloReceived)
        decision = handshake.authenticated(WELCOME)
        assert isinstance(decision, Accept)
        await stream.send(decision.data)
        decoder: FrameDecoder[PeerMessage] = handshake.decoder
        pending = handshake.trailing
        while True:
            for request in pending:
                assert isinstance(request, GetStatus | Ping)
                await stream.send(encode_frame(answer(request)))
            try:
                pending = decoder.feed(await stream.receive())
            except anyio.EndOfStream:
                return


async def _ask_status(answer: Callable[[GetStatus | Ping], Reply]) -> StatusReported | GriddError:
    """The client's answer to `status` from the scripted broker: the reply, or what it raised."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, lambda s: _scripted_broker(s, answer))
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        try:
            with anyio.fail_after(10):
                async with open_connection(f"127.0.0.1:{port}", TOKEN, insecure=True) as conn:
                    return await conn.request(lambda rid: GetStatus(rid=rid))
        except GriddError as exc:
            return exc
        finally:
            tg.cancel_scope.cancel()


async def test_a_request_returns_the_reply_its_type_names() -> None:
    status = await _ask_status(lambda r: StatusReported(rid=r.rid, counts={"queued": 1}, workers=0, slots=0, running=0))
    assert isinstance(status, StatusReported) and status.counts == {"queued": 1}


async def test_a_reply_of_another_type_than_the_request_names_is_refused_as_a_bad_frame() -> None:
    refused = await _ask_status(lambda r: Pong(rid=r.rid))
    assert isinstance(refused, BadFrame) and "answered GetStatus with Pong" in str(refused)

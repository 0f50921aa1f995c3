"""The handshake's decisions, sans-IO: a client and a broker handshake wired back to back, or one side fed
bytes by hand. A stranger of another protocol version, a secret of no credential and a frame out of
order are each refused with an Error frame that the peer turns into its typed exception; nothing pipelined
behind the handshake is lost."""

from __future__ import annotations

import pytest

from gridd.protocol.errors import (
    AuthFailed,
    BadFrame,
    ErrorCode,
    FrameTooLarge,
    TooManyConnections,
    UnsupportedVersion,
)
from gridd.protocol.frames import FrameDecoder, encode_frame, encode_frames
from gridd.protocol.handshake import (
    HANDSHAKE_FRAME_BYTES,
    NEED_DATA,
    Accept,
    BrokerHandshake,
    CAPresented,
    ClientHandshake,
    HandshakeMisuse,
    HelloReceived,
    Refuse,
    State,
    Welcomed,
)
from gridd.protocol.messages import BrokerCA, BrokerMessage, Error, GetStatus, Hello, PeerMessage, Ping, Welcome
from gridd.protocol.version import PROTOCOL_VERSION

HELLO = Hello(version=PROTOCOL_VERSION, role="client", name="c1", secret="s3cret")
WELCOME = Welcome(broker_version="1.0", lease_ttl_s=30.0, heartbeat_s=5.0)


def _error_in(data: bytes) -> Error:
    (message,) = FrameDecoder(BrokerMessage).feed(data)
    assert isinstance(message, Error)
    return message


def test_a_client_and_a_broker_agree_on_plain_tcp_and_the_broker_learns_who_is_there() -> None:
    client, broker = ClientHandshake(HELLO, BrokerMessage, tls=False), BrokerHandshake(PeerMessage)
    assert broker.next_event() is NEED_DATA
    broker.receive_data(client.data_to_send())
    event = broker.next_event()
    assert event == HelloReceived(HELLO) and broker.state is State.AUTHENTICATING
    decision = broker.authenticated(WELCOME)
    assert isinstance(decision, Accept) and broker.state is State.ESTABLISHED
    assert client.next_event() is NEED_DATA
    client.receive_data(decision.data)
    assert client.next_event() == Welcomed(WELCOME) and client.state is State.ESTABLISHED


def test_over_tls_the_client_sends_its_secret_only_after_the_broker_showed_its_ca() -> None:
    client = ClientHandshake(HELLO, BrokerMessage, tls=True)
    assert client.data_to_send() == b""  # nothing leaves before the CA was checked
    with pytest.raises(HandshakeMisuse):
        client.send_hello()
    client.receive_data(encode_frame(BrokerCA(ca_pem="PEM")))
    assert client.next_event() == CAPresented("PEM")
    broker = BrokerHandshake(PeerMessage)
    broker.receive_data(client.send_hello())
    assert broker.next_event() == HelloReceived(HELLO)


def test_a_hello_of_another_protocol_version_is_refused_with_unsupported_version() -> None:
    broker = BrokerHandshake(PeerMessage)
    broker.receive_data(encode_frame(Hello(version=PROTOCOL_VERSION + 1, role="client", name="new")))
    decision = broker.next_event()
    assert isinstance(decision, Refuse) and isinstance(decision.error, UnsupportedVersion)
    assert _error_in(decision.data).code == ErrorCode.UNSUPPORTED_VERSION and broker.state is State.CLOSED
    client = ClientHandshake(HELLO, BrokerMessage, tls=False)
    client.receive_data(decision.data)
    with pytest.raises(UnsupportedVersion, match=f"this broker speaks {PROTOCOL_VERSION}"):
        client.next_event()


def test_a_secret_of_no_credential_is_refused_with_auth_failed_and_the_peer_sees_it_typed() -> None:
    broker = BrokerHandshake(PeerMessage)
    broker.receive_data(encode_frame(HELLO))
    assert isinstance(broker.next_event(), HelloReceived)
    decision = broker.authenticated(None)
    assert isinstance(decision, Refuse) and isinstance(decision.error, AuthFailed)
    assert _error_in(decision.data) == Error(rid=None, code=ErrorCode.AUTH_FAILED, message=str(decision.error))
    client = ClientHandshake(HELLO, BrokerMessage, tls=False)
    client.receive_data(decision.data)
    with pytest.raises(AuthFailed, match="no such credential"):
        client.next_event()
    assert client.state is State.CLOSED


def test_a_request_before_hello_is_refused_as_a_bad_frame() -> None:
    broker = BrokerHandshake(PeerMessage)
    broker.receive_data(encode_frame(GetStatus(rid=1)))
    decision = broker.next_event()
    assert isinstance(decision, Refuse) and isinstance(decision.error, BadFrame)
    assert "expected Hello" in _error_in(decision.data).message
    with pytest.raises(HandshakeMisuse):  # refused: nothing more is read or decided
        broker.next_event()


def test_a_broker_that_welcomes_before_showing_its_ca_is_a_bad_frame_and_the_secret_stays_home() -> None:
    client = ClientHandshake(HELLO, BrokerMessage, tls=True)
    client.receive_data(encode_frame(WELCOME))
    with pytest.raises(BadFrame, match="CA first"):
        client.next_event()
    with pytest.raises(HandshakeMisuse):
        client.send_hello()


def test_a_broker_answering_hello_with_anything_but_welcome_is_a_bad_frame() -> None:
    client = ClientHandshake(HELLO, BrokerMessage, tls=False)
    client.receive_data(encode_frame(BrokerCA(ca_pem="late")))
    with pytest.raises(BadFrame, match="expected a welcome"):
        client.next_event()


def test_a_refusal_before_the_handshake_reaches_the_client_as_its_typed_error() -> None:
    client = ClientHandshake(HELLO, BrokerMessage, tls=True)  # e.g. the listener's "too many connections"
    client.receive_data(encode_frame(Error(rid=None, code=ErrorCode.TOO_MANY_CONNECTIONS, message="busy")))
    with pytest.raises(TooManyConnections, match="busy"):
        client.next_event()


def test_a_stranger_cannot_make_the_broker_buffer_a_large_frame_before_it_authenticated() -> None:
    broker = BrokerHandshake(PeerMessage)
    broker.receive_data((HANDSHAKE_FRAME_BYTES + 1).to_bytes(4, "big"))
    decision = broker.next_event()
    assert isinstance(decision, Refuse) and isinstance(decision.error, FrameTooLarge)
    broker.receive_data(b"x" * 1000)  # the body that follows is never kept
    assert broker.decoder.buffered <= 4


def test_once_established_the_frame_limit_grows_and_pipelined_requests_are_kept_in_order() -> None:
    broker = BrokerHandshake(PeerMessage, established_limit=10 * HANDSHAKE_FRAME_BYTES)
    chunks = encode_frames([HELLO, GetStatus(rid=1), Ping(rid=2)])
    for i in range(len(chunks)):  # one byte at a time: any chunking decides the same
        broker.receive_data(chunks[i : i + 1])
    assert isinstance(broker.next_event(), HelloReceived)
    with pytest.raises(HandshakeMisuse):
        _ = broker.trailing  # not established yet
    assert isinstance(broker.authenticated(WELCOME), Accept)
    assert broker.trailing == [GetStatus(rid=1), Ping(rid=2)]
    assert broker.decoder.max_frame_bytes == 10 * HANDSHAKE_FRAME_BYTES

"""The handshake of a connection, sans-IO (as h11 does HTTP): bytes in, events and decisions out, bytes to
send back. No sockets, no event loop: the broker's session and the client's connection own their streams
and drive one of these, so both sides follow the one rulebook written here.

The order (plain TCP, or TLS where the broker speaks first):
    broker -> peer   BrokerCA   (TLS only: its CA, which the peer checks before its secret leaves it)
    peer -> broker   Hello      (protocol version, role, name, the credential's secret)
    broker -> peer   Welcome    (or an Error, and the broker closes)

Rules:
1. Anything out of that order is the other side's protocol error (BadFrame), and so is a frame over the
   handshake's size limit: until the peer has authenticated, the broker buffers only small frames, so
   neither garbage that looks like a long frame nor a stranger makes it hold 16 MiB.
2. The broker refuses with an Error frame and closes: a Hello of another protocol version
   (UnsupportedVersion), a secret of no known credential (AuthFailed). The peer turns that Error into
   its typed exception. Checking the secret (a store lookup) and the CA (files, the TLS session) is I/O,
   so the driver does it when asked (HelloReceived, CAPresented) and hands back the outcome.
3. Once established, the frame decoder goes on with the established size limit, together with any
   message the peer pipelined behind the handshake (`decoder`, `trailing`): nothing read is dropped.
4. The driver names what the other side may send (the broker: PeerMessage, a peer: BrokerMessage, of
   protocol/messages.py), which the decoder decodes: this module imports no message but the handshake's
   own, so that a command that speaks one request imports only its messages (client/oneshot.py).
Calling a method out of turn is a bug of this side, raised as HandshakeMisuse (h11's LocalProtocolError).
"""

from __future__ import annotations

import enum
from typing import Final, Generic, TypeVar

import msgspec

from gridd.protocol.connection_messages import BrokerCA, Error, Hello, Welcome
from gridd.protocol.errors import AuthFailed, BadFrame, GriddError, ProtocolError, UnsupportedVersion, exception_for
from gridd.protocol.frames import MAX_FRAME_BYTES, FrameDecoder, encode_frame
from gridd.protocol.version import PROTOCOL_VERSION

HANDSHAKE_FRAME_BYTES = 64 * 1024  # what the broker reads from a peer that has not authenticated yet

T = TypeVar("T")


class HandshakeMisuse(RuntimeError):
    """This side drove the handshake out of turn: a bug of ours, never the peer's doing."""


class State(enum.Enum):
    AWAIT_CA = "await_ca"  # client, TLS: the broker speaks first
    CA_PRESENTED = "ca_presented"  # client: the driver checks the CA, then send_hello()
    AWAIT_WELCOME = "await_welcome"  # client: Hello sent
    AWAIT_HELLO = "await_hello"  # broker
    AUTHENTICATING = "authenticating"  # broker: the driver checks the secret, then authenticated()
    ESTABLISHED = "established"
    CLOSED = "closed"  # refused, or broken by the other side


class NeedData:
    """next_event's answer when the bytes so far hold no complete message: receive more."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()

# The events below are frozen Structs, not dataclasses: the dataclass decorator (and the inspect module it
# imports) would cost a one-shot command (`gridd status`) about 2 ms of its start-up. Never encoded.


class HelloReceived(msgspec.Struct, frozen=True):
    """Broker: a peer of our protocol version said who it is; check its secret, then authenticated()."""

    hello: Hello


class Accept(msgspec.Struct, frozen=True):
    """Broker: the peer is in. Send `data` (its Welcome); the connection is established."""

    data: bytes


class Refuse(msgspec.Struct, frozen=True):
    """Broker: the peer is refused. Send `data` (an Error frame saying why), then close."""

    error: GriddError
    data: bytes


class CAPresented(msgspec.Struct, frozen=True):
    """Client, TLS: the broker showed its CA (PEM); check it, then send_hello()."""

    ca_pem: str


class Welcomed(msgspec.Struct, frozen=True):
    """Client: the broker accepted us; the connection is established."""

    welcome: Welcome


class _Handshake(Generic[T]):
    """What both sides share: a frame decoder with the handshake's size limit, and the state."""

    def __init__(
        self, union: object, state: State, limit: int, established_limit: int, expected: object = None
    ) -> None:
        self.state = state
        self.decoder: FrameDecoder[T] = FrameDecoder(union, limit, expected=expected)
        self._established_limit = established_limit
        self._pending: list[T] = []
        self._broken: ProtocolError | None = None

    def receive_data(self, data: bytes) -> None:
        """Bytes as they arrived from the other side (any chunking)."""
        if self._broken is not None or self.state is State.CLOSED:
            return
        try:
            self._pending.extend(self.decoder.feed(data))
        except ProtocolError as exc:  # decided at next_event, after the messages before it
            self._broken = exc

    @property
    def trailing(self) -> list[T]:
        """Once established: messages that came behind the handshake's last, to be served next."""
        self._expect(State.ESTABLISHED)
        return list(self._pending)

    def _next_message(self) -> T | NeedData | ProtocolError:
        if self._pending:
            return self._pending.pop(0)
        if self._broken is not None:
            self.state = State.CLOSED
            return self._broken
        return NEED_DATA

    def _establish(self) -> None:
        self.state = State.ESTABLISHED
        self.decoder.max_frame_bytes = self._established_limit

    def _expect(self, *states: State) -> None:
        if self.state not in states:
            raise HandshakeMisuse(f"handshake is {self.state.value}, not {' or '.join(s.value for s in states)}")


class BrokerHandshake(_Handshake[T]):
    """The broker's side: read Hello, have the driver check its secret, answer Welcome or an Error."""

    def __init__(self, union: object, *, established_limit: int = MAX_FRAME_BYTES) -> None:
        """`union`: what a peer may send (PeerMessage, spelled for msgspec: T)."""
        super().__init__(union, State.AWAIT_HELLO, HANDSHAKE_FRAME_BYTES, established_limit)

    def next_event(self) -> NeedData | HelloReceived | Refuse:
        """What the bytes so far call for: more bytes, a Hello to authenticate, or a refusal."""
        self._expect(State.AWAIT_HELLO)
        message = self._next_message()
        if isinstance(message, NeedData):
            return message
        if isinstance(message, ProtocolError):
            return self._refuse(message)
        if not isinstance(message, Hello):
            return self._refuse(BadFrame(f"expected Hello during the handshake, got {type(message).__name__}"))
        if message.version != PROTOCOL_VERSION:
            return self._refuse(
                UnsupportedVersion(f"peer speaks protocol {message.version}; this broker speaks {PROTOCOL_VERSION}")
            )
        self.state = State.AUTHENTICATING
        return HelloReceived(message)

    def authenticated(self, welcome: Welcome | None) -> Accept | Refuse:
        """The secret's check: the Welcome to send if it names a credential, None if it names none."""
        self._expect(State.AUTHENTICATING)
        if welcome is None:
            return self._refuse(AuthFailed("authentication failed: the broker knows no such credential (GRIDD_TOKEN)"))
        self._establish()
        return Accept(encode_frame(welcome))

    def _refuse(self, error: GriddError) -> Refuse:
        self.state = State.CLOSED
        return Refuse(error, encode_frame(Error(rid=None, code=error.code, message=str(error))))


class ClientHandshake(_Handshake[T]):
    """A peer's side: (TLS: take the broker's CA, let the driver check it,) send Hello, await Welcome.

    next_event raises what ends the handshake: the broker's Error as its typed exception (AuthFailed,
    UnsupportedVersion, TooManyConnections, ...), or BadFrame when the broker breaks the order.
    """

    def __init__(
        self,
        hello: Hello,
        union: object,
        *,
        tls: bool,
        established_limit: int = MAX_FRAME_BYTES,
        expected: object = None,
    ) -> None:
        """`union`: what the broker may send (BrokerMessage, spelled for msgspec: T; with `expected`, it
        may be known Later). `expected`: the replies the driver will wait for once established (a type or
        a union), if it knows them: the decoder then decodes those and the handshake's own frames first
        (FrameDecoder)."""
        # The broker's handshake frames are read under the ordinary frame limit; what it may send once
        # it has welcomed us (established_limit) is larger (gridd/client/connection.py says why).
        state = State.AWAIT_CA if tls else State.AWAIT_WELCOME
        own = None if expected is None else BrokerCA | Welcome | Error | expected
        super().__init__(union, state, MAX_FRAME_BYTES, established_limit, own)
        self._hello = encode_frame(hello)

    def data_to_send(self) -> bytes:
        """What to send at once: Hello on plain TCP; nothing over TLS, where the broker speaks first."""
        return self._hello if self.state is State.AWAIT_WELCOME else b""

    def send_hello(self) -> bytes:
        """The CA checked out: Hello, to send now."""
        self._expect(State.CA_PRESENTED)
        self.state = State.AWAIT_WELCOME
        return self._hello

    def next_event(self) -> NeedData | CAPresented | Welcomed:
        """What the bytes so far call for: more bytes, a CA to check, or the broker's Welcome."""
        self._expect(State.AWAIT_CA, State.AWAIT_WELCOME)
        message = self._next_message()
        if isinstance(message, NeedData):
            return message
        if isinstance(message, ProtocolError):
            raise message
        if isinstance(message, Error):
            self.state = State.CLOSED
            raise exception_for(message.code, message.message)
        if self.state is State.AWAIT_CA:
            if not isinstance(message, BrokerCA):
                raise self._break(f"expected the broker's CA first, got {type(message).__name__}")
            self.state = State.CA_PRESENTED
            return CAPresented(message.ca_pem)
        if not isinstance(message, Welcome):
            raise self._break(f"expected a welcome from the broker, got {type(message).__name__}")
        self._establish()
        return Welcomed(message)

    def _break(self, why: str) -> BadFrame:
        self.state = State.CLOSED
        return BadFrame(why)

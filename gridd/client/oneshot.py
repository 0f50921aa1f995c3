"""A connection for a command that asks the broker once and exits (`gridd submit`, `show`, `status`): a
blocking socket, no event loop.

Why: for such a command, importing and starting an event loop (asyncio, anyio and its TLS streams) cost
more than connecting, the TLS handshake and the request together (benchmarks/README.md, scenario `cli`).

Rules: the same checks, in the same order, with the same errors as client/connection.py: TLS 1.3 checked
against the credential's CA (client/trust.py) before the secret leaves, the protocol's ClientHandshake
deciding every frame, a request refused before it is sent if the broker did not announce a feature it
uses, an Error reply raised as its typed exception, a reply of another type than the request names
refused. What it leaves out is what a one-shot command does not need: no reader task (a request reads
until its reply; anything the broker sends unasked meanwhile is dropped), no keep-alive, no pushes. One
broker address: a list of several goes through the async client.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from gridd.client.trust import Pin, check_presented, client_context, pin_for, tls_refusal
from gridd.config import parse_address, parse_addresses
from gridd.protocol.base import Message, Reply, Request
from gridd.protocol.connection_messages import Error, Hello, Welcome
from gridd.protocol.credentials import parse_credential
from gridd.protocol.errors import (
    BadFrame,
    BrokerTooOld,
    ConnectionLost,
    NoToken,
    exception_for,
)
from gridd.protocol.features import missing, too_old
from gridd.protocol.frames import encode_frame
from gridd.protocol.handshake import NEED_DATA, CAPresented, ClientHandshake, Welcomed
from gridd.protocol.version import PROTOCOL_VERSION

# As client/connection.py's.
CONNECT_TIMEOUT_S = 10.0
MAX_REPLY_BYTES = 256 * 1024 * 1024
READ_BYTES = 65536

R = TypeVar("R", bound=Reply)


class OneShot:
    """An established connection: `request` sends one request and returns its reply."""

    def __init__(
        self, sock: socket.socket, address: str, welcome: Welcome, handshake: ClientHandshake[Message]
    ) -> None:
        self._sock = sock
        self.address = address
        self.welcome = welcome
        # The handshake's decoder goes on, with what it read past the Welcome: no byte is dropped.
        self._decoder = handshake.decoder
        self._pending: deque[Message] = deque(handshake.trailing)
        self._next_rid = 1

    def request(self, build: Callable[[int], Request[R]]) -> R:
        """Send `build(rid)` and return the reply for that rid, as Connection.request does."""
        rid = self._next_rid
        self._next_rid += 1
        request = build(rid)
        self.refuse_unknown_features(request)
        try:
            self._sock.sendall(encode_frame(request))
            reply = self._reply_to(rid)
        except OSError as exc:
            raise self._lost() from exc
        if isinstance(reply, Error):
            raise exception_for(reply.code, reply.message)
        if not isinstance(reply, type(request).reply_type()):
            raise BadFrame(f"the broker answered {type(request).__name__} with {type(reply).__name__}")
        return reply

    def refuse_unknown_features(self, request: Message) -> None:
        """BrokerTooOld, before anything is sent, for a request using a feature the broker did not announce
        (as Connection.refuse_unknown_features)."""
        feature = missing(request, self.welcome.features)
        if feature is not None:
            raise BrokerTooOld(too_old(feature, self.address))

    def _reply_to(self, rid: int) -> Reply | Error:
        while True:
            while self._pending:
                message = self._pending.popleft()
                if isinstance(message, Error) and message.rid is None:  # the broker ends the connection
                    raise exception_for(message.code, message.message)
                if isinstance(message, Reply | Error) and message.rid == rid:
                    return message
            data = self._sock.recv(READ_BYTES)
            if not data:
                raise self._lost()
            self._pending.extend(self._decoder.feed(data))

    def _lost(self) -> ConnectionLost:
        return ConnectionLost(f"connection to the broker at {self.address} was lost")


@contextmanager
def open_oneshot(
    address: str, token: str | None, union: object, *, insecure: bool = False, expected: object = None
) -> Iterator[OneShot]:
    """Connect as a client (TLS 1.3; plain TCP if `insecure`), check the broker against the credential
    `token` names, authenticate with its secret; the socket closes when the block ends. `union`: what the
    broker may send (protocol/messages.py's BrokerMessage, or frames.Later returning it); `expected`: the
    reply types the requests will have (decoded first: FrameDecoder), if known."""
    host, port = _split(address)
    if not token:
        raise NoToken("no cluster token: set GRIDD_TOKEN (the broker's data dir holds it in the file 'token')")
    digest, secret = parse_credential(token)
    pin = None if insecure else pin_for(digest, os.environ)  # before dialling: a plain secret may have no CA
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    try:
        # bytes: typeshed says str, the C resolver takes either (see _wire_name)
        tcp = socket.create_connection((_wire_name(host), port), timeout=CONNECT_TIMEOUT_S)  # type: ignore[arg-type]
    except (socket.gaierror, TimeoutError) as exc:
        raise ConnectionLost(f"cannot connect to the broker at {address}: {_why(exc)}") from exc
    except OSError as exc:  # refused, unreachable: in anyio's words, so that both clients say the same
        raise ConnectionLost(f"cannot connect to the broker at {address}: All connection attempts failed") from exc
    with tcp:
        sock = tcp if pin is None else _start_tls(tcp, address, host, pin, deadline)
        with sock:
            hello = Hello(version=PROTOCOL_VERSION, role="client", name=f"client-{os.getpid()}", secret=secret)
            handshake: ClientHandshake[Message] = ClientHandshake(
                hello, union, tls=pin is not None, established_limit=MAX_REPLY_BYTES, expected=expected
            )
            welcome = _handshake(sock, address, handshake, pin, host, deadline)
            sock.settimeout(None)  # a request may wait long for its reply (a submit, for its commit)
            yield OneShot(sock, address, welcome, handshake)


def _start_tls(tcp: socket.socket, address: str, host: str, pin: Pin, deadline: float) -> ssl.SSLSocket:
    try:
        tcp.settimeout(_left(deadline))
        return client_context(pin).wrap_socket(tcp, server_hostname=_wire_name(host))
    except ssl.SSLError as exc:
        raise tls_refusal(exc, address) from None
    except TimeoutError as exc:
        raise ConnectionLost(f"the broker at {address} did not finish the TLS handshake") from exc
    except OSError as exc:
        raise ConnectionLost(f"the broker at {address} closed the connection during the TLS handshake") from exc


def _handshake(
    sock: socket.socket, address: str, handshake: ClientHandshake[Message], pin: Pin | None, host: str, deadline: float
) -> Welcome:
    """Drive the protocol's ClientHandshake over `sock`, as client/connection.py does over its stream."""
    try:
        if data := handshake.data_to_send():
            sock.settimeout(_left(deadline))
            sock.sendall(data)
        while True:
            event = handshake.next_event()
            if event is NEED_DATA:
                sock.settimeout(_left(deadline))
                data = sock.recv(READ_BYTES)
                if not data:
                    raise ConnectionResetError
                handshake.receive_data(data)
            elif isinstance(event, CAPresented):  # over TLS: checked before the secret goes
                if pin is not None and pin.anchors is None:
                    assert isinstance(sock, ssl.SSLSocket)  # noqa: S101 - a pin means TLS
                    leaf = sock.getpeercert(binary_form=True)
                    check_presented(pin, host, event.ca_pem, leaf, os.environ)
                sock.settimeout(_left(deadline))
                sock.sendall(handshake.send_hello())
            elif isinstance(event, Welcomed):
                return event.welcome
    except TimeoutError as exc:
        raise ConnectionLost(f"the broker at {address} did not answer the handshake") from exc
    except OSError as exc:
        raise ConnectionLost(f"the broker at {address} closed the connection during the handshake") from exc


def _left(deadline: float) -> float:
    """What is left of the connect timeout, for the next blocking step (TimeoutError once it is spent)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _wire_name(host: str) -> bytes:
    """The host name as the resolver and ssl read it. An ASCII name (an address, most names) is given as its
    bytes: given as text, Python loads its IDNA codec (with stringprep and unicodedata) to encode it, a
    millisecond of a one-shot command's start-up. Any other goes through that codec, as it would."""
    return host.encode("ascii") if host.isascii() else host.encode("idna")


def _split(address: str) -> tuple[str, int]:
    """One broker's HOST:PORT (the quick path is taken only with one: a list goes to the async client), with
    the message every command gives for a malformed one."""
    [entry] = parse_addresses(address)
    return parse_address(entry)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__

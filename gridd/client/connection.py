"""A framed, authenticated connection to the broker: the client side's one place that joins bytes and
messages.

Requests carry a rid; one reader task routes each reply to the request that waits for it, so any
number of requests can be in flight on one connection. A request is typed by the reply it names
(`Request[R]`, gridd/protocol/base.py): `request` returns an R, and refuses a reply of another type.
Messages the broker sends unasked (events, lease revocations) go to `pushes`. The handshake's decisions
are the protocol's (gridd/protocol/handshake.py); this module reads, writes and checks the broker's CA.
Transport errors become ConnectionLost, once, here.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio
from anyio.abc import ByteStream, TaskStatus
from anyio.streams.memory import MemoryObjectSendStream
from anyio.streams.tls import TLSAttribute, TLSStream

from gridd.client.addresses import first_answering, went_away
from gridd.client.trust import Pin, check_presented, client_context, pin_for, tls_refusal
from gridd.config import parse_address, parse_addresses
from gridd.protocol.credentials import parse_credential
from gridd.protocol.errors import (
    BadFrame,
    BrokerTooOld,
    ConnectionLost,
    GriddError,
    NoToken,
    exception_for,
)
from gridd.protocol.features import missing, too_old
from gridd.protocol.frames import FrameDecoder, encode_frame
from gridd.protocol.handshake import NEED_DATA, CAPresented, ClientHandshake, Welcomed
from gridd.protocol.messages import BrokerMessage, Error, Hello, JobSpec, Message, Ping, Reply, Request, Welcome
from gridd.protocol.version import PROTOCOL_VERSION

CONNECT_TIMEOUT_S = 10.0
# What the broker sends may be larger than what it accepts (a `wait` on a group of 200,000 jobs lists
# them all); the broker has proven the token by then, so the client trusts it with this much.
MAX_REPLY_BYTES = 256 * 1024 * 1024
READ_BYTES = 65536
PUSH_BUFFER = 10_000
SEND_TIMEOUT_S = 30.0  # a frame not written in this long: the broker stopped reading, the connection is lost
TRANSPORT_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
"""What anyio and the OS raise when a connection breaks: on the client side they become ConnectionLost
here, and only here (the broker's side maps the same set in gridd/broker/transport.py)."""

R = TypeVar("R", bound=Reply)


class _Slot:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.reply: Reply | Error | None = None


class Connection:
    """Send requests, await their replies; read unasked messages from `pushes`."""

    def __init__(
        self,
        stream: ByteStream,
        address: str,
        welcome: Welcome,
        decoder: FrameDecoder[BrokerMessage] | None = None,
        trailing: list[BrokerMessage] | None = None,
    ) -> None:
        self._stream = stream
        self.address = address
        self.welcome = welcome
        # The handshake's decoder goes on (with what it read past the Welcome), so no byte is dropped.
        self._decoder: FrameDecoder[BrokerMessage] = decoder or FrameDecoder(BrokerMessage, MAX_REPLY_BYTES)
        self._trailing = trailing or []
        self._next_rid = 1
        self._waiting: dict[int, _Slot] = {}
        self._closed: GriddError | None = None
        self._push_tx: MemoryObjectSendStream[Message]
        self._push_tx, self.pushes = anyio.create_memory_object_stream[Message](PUSH_BUFFER)
        self._send_lock = anyio.Lock()
        # A request abandoned (cancelled) after it was sent may still be answered; such a late reply goes
        # to `on_late_reply` instead of nowhere (a worker must hand back jobs leased to it that way).
        self.on_late_reply: Callable[[Reply | Error], None] | None = None
        self._abandoned: set[int] = set()
        self._last_sent = anyio.current_time()

    async def request(self, build: Callable[[int], Request[R]]) -> R:
        """Send `build(rid)` and return the reply for that rid, typed by the request (`Request[R]` names
        the reply that answers it). An Error reply raises its typed exception; a reply of another type
        than the request's (a broker bug) raises BadFrame."""
        rid = self._next_rid
        self._next_rid = (rid + 1) % 2**32
        slot = self._waiting[rid] = _Slot()
        sent = False
        try:
            request = build(rid)
            self.refuse_unknown_features(request)
            await self.send(request)
            sent = True
            await slot.done.wait()
        except BaseException:
            # Cancelled after the reply arrived but before this task resumed: the reply is late too.
            if slot.reply is not None and self.on_late_reply is not None:
                self.on_late_reply(slot.reply)
            raise
        finally:
            self._waiting.pop(rid, None)
            if sent and not slot.done.is_set():
                self._abandoned.add(rid)
        reply = slot.reply
        if reply is None:
            raise self.closed_error()
        if isinstance(reply, Error):
            raise exception_for(reply.code, reply.message)
        if not isinstance(reply, type(request).reply_type()):
            raise BadFrame(f"the broker answered {type(request).__name__} with {type(reply).__name__}")
        return reply

    def refuse_unknown_features(self, request: Message | JobSpec) -> None:
        """BrokerTooOld, before anything is sent, for a request using a feature the broker did not announce
        in its Welcome (protocol/features.py): an older broker would silently ignore its fields."""
        feature = missing(request, self.welcome.features)
        if feature is not None:
            raise BrokerTooOld(too_old(feature, self.address))

    async def send(self, message: Message) -> None:
        """Write one frame, whole. Its write is not cancellable: one cut short (a lease request given up
        as the budget grew) would leave half a frame on the wire, and a TLS stream can send nothing after a
        record it began (anyio then marks it broken): every later request, results included, would fail
        and the worker reconnect and send its results again. A write that takes SEND_TIMEOUT_S (a broker
        that stopped reading) loses the connection instead."""
        if self._closed is not None:
            raise self._closed
        frame = encode_frame(message)
        try:
            async with self._send_lock:
                with anyio.CancelScope(shield=True) as writing:
                    writing.deadline = anyio.current_time() + SEND_TIMEOUT_S
                    await self._stream.send(frame)
        except TRANSPORT_ERRORS as exc:
            raise self._lost() from exc
        if writing.cancelled_caught:
            await anyio.aclose_forcefully(self._stream)
            raise self._lost()
        self._last_sent = anyio.current_time()

    async def keep_alive(self, every_s: float) -> None:
        """Ping whenever nothing was sent for every_s, so the broker does not close an idle connection
        that its program still holds (a script between two submits). Never raises: ends with the
        connection."""
        while True:
            await anyio.sleep(max(0.0, self._last_sent + every_s - anyio.current_time()))
            if anyio.current_time() - self._last_sent < every_s:
                continue
            try:
                await self.request(_ping)
            except GriddError:
                return

    async def read_loop(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Route every incoming message until the connection ends, then fail whoever still waits."""
        task_status.started()
        try:
            for message in self._trailing:
                await self._route(message)
            self._trailing = []
            while True:
                try:
                    data = await self._stream.receive(READ_BYTES)
                except TRANSPORT_ERRORS as exc:
                    raise self._lost() from exc
                for message in self._decoder.feed(data):
                    await self._route(message)
        except GriddError as exc:
            self._closed = exc
        finally:
            if self._closed is None:
                self._closed = ConnectionLost(f"connection to the broker at {self.address} was closed")
            for slot in self._waiting.values():
                slot.done.set()
            self._push_tx.close()

    async def _route(self, message: BrokerMessage) -> None:
        if isinstance(message, Error):
            if message.rid is None:  # the broker ends the connection, and says why
                raise exception_for(message.code, message.message)
            rid = message.rid
        elif isinstance(message, Reply):
            rid = message.rid
        else:  # unasked messages: a slow reader here slows this connection only, as it should
            await self._push_tx.send(message)
            return
        slot = self._waiting.get(rid)
        if slot is not None:
            slot.reply = message
            slot.done.set()
        elif rid in self._abandoned:
            self._abandoned.discard(rid)
            if self.on_late_reply is not None:
                self.on_late_reply(message)

    def closed_error(self) -> GriddError:
        """Why the connection ended (ConnectionLost unless the broker said otherwise)."""
        return self._closed or self._lost()

    def _lost(self) -> ConnectionLost:
        return ConnectionLost(f"connection to the broker at {self.address} was lost")

    async def aclose(self) -> None:
        await self._stream.aclose()


def _ping(rid: int) -> Ping:
    return Ping(rid=rid)


@asynccontextmanager
async def open_connection(
    address: str, token: str | None, *, role: str = "client", name: str | None = None, insecure: bool = False
) -> AsyncIterator[Connection]:
    """Connect (TLS 1.3; plain TCP if `insecure`) to the broker at `address`, or to the first that answers
    of several (`a:7420,b:7420`: client/addresses.py), check it against the credential `token` names
    (client/trust.py), authenticate with its secret, and keep the reader running until exit.
    `Connection.address` is the broker that answered."""
    addresses = parse_addresses(address)
    if not token:
        raise NoToken("no cluster token: set GRIDD_TOKEN (the broker's data dir holds it in the file 'token')")
    digest, secret = parse_credential(token)
    pin = None if insecure else pin_for(digest, os.environ)  # before dialling: a plain secret may have no CA
    hello = Hello(version=PROTOCOL_VERSION, role=role, name=name or f"{role}-{os.getpid()}", secret=secret)
    tcp, connection = await first_answering(addresses, lambda at: _dial(at, hello, pin))
    async with tcp:
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(_read, connection, addresses)
                if connection.welcome.idle_timeout_s > 0:
                    tg.start_soon(connection.keep_alive, connection.welcome.idle_timeout_s / 3)
                try:
                    yield connection
                finally:
                    tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The reader never raises, so the group holds the caller's own exception: give it back bare.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise


async def _dial(address: str, hello: Hello, pin: Pin | None) -> tuple[ByteStream, Connection]:
    """One broker: TCP, TLS checked against `pin`, the handshake. The TCP stream (to close) and the
    connection; on failure nothing is left open."""
    host, port = parse_address(address)
    try:
        with anyio.fail_after(CONNECT_TIMEOUT_S):
            tcp = await anyio.connect_tcp(host, port)
    except (OSError, TimeoutError) as exc:
        raise ConnectionLost(f"cannot connect to the broker at {address}: {_why(exc)}") from exc
    try:
        stream: ByteStream = tcp if pin is None else await _start_tls(tcp, address, host, pin)
        welcome, handshake = await _handshake(stream, address, hello, pin, host)
    except BaseException:
        await anyio.aclose_forcefully(tcp)
        raise
    return tcp, Connection(stream, address, welcome, handshake.decoder, handshake.trailing)


async def _read(
    connection: Connection, addresses: list[str], *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """The connection's reader. Ended by itself (not cancelled): its broker went away, so the next
    connection to these addresses starts with another (client/addresses.py)."""
    await connection.read_loop(task_status=task_status)
    went_away(addresses, connection.address)


async def _start_tls(tcp: ByteStream, address: str, host: str, pin: Pin) -> TLSStream:
    try:
        with anyio.fail_after(CONNECT_TIMEOUT_S):
            return await TLSStream.wrap(tcp, hostname=host, ssl_context=client_context(pin), standard_compatible=False)
    except ssl.SSLError as exc:
        raise tls_refusal(exc, address) from None
    except TRANSPORT_ERRORS as exc:
        raise ConnectionLost(f"the broker at {address} closed the connection during the TLS handshake") from exc
    except TimeoutError as exc:
        raise ConnectionLost(f"the broker at {address} did not finish the TLS handshake") from exc


async def _handshake(
    stream: ByteStream, address: str, hello: Hello, pin: Pin | None, host: str
) -> tuple[Welcome, ClientHandshake[BrokerMessage]]:
    """Drive the protocol's ClientHandshake over `stream`: the checks of the broker's CA happen here
    (they read files and the TLS session), every decision about the order of frames there."""
    handshake: ClientHandshake[BrokerMessage] = ClientHandshake(
        hello, BrokerMessage, tls=pin is not None, established_limit=MAX_REPLY_BYTES
    )
    try:
        with anyio.fail_after(CONNECT_TIMEOUT_S):
            if data := handshake.data_to_send():
                await stream.send(data)
            while True:
                event = handshake.next_event()
                if event is NEED_DATA:
                    handshake.receive_data(await stream.receive(READ_BYTES))
                elif isinstance(event, CAPresented):  # over TLS: checked before the secret goes
                    if pin is not None and pin.anchors is None:
                        leaf = stream.extra(TLSAttribute.peer_certificate_binary)
                        check_presented(pin, host, event.ca_pem, leaf, os.environ)
                    await stream.send(handshake.send_hello())
                elif isinstance(event, Welcomed):
                    return event.welcome, handshake
    except TRANSPORT_ERRORS as exc:
        raise ConnectionLost(f"the broker at {address} closed the connection during the handshake") from exc
    except TimeoutError as exc:
        raise ConnectionLost(f"the broker at {address} did not answer the handshake") from exc


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__

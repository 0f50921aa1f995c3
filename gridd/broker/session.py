"""One peer's connection to the broker, from accept to close: the handshake, the read loop and its
liveness, the writer of replies, and the close.

Rules: this is the broker's one place that joins bytes and messages. Nothing is trusted from the
network: the decoder checks every frame's size before buffering it and validates it on decode; a peer
that breaks the wire rules gets an Error frame and its connection closed, and nobody else notices.
The handshake's decisions are the protocol's (gridd/protocol/handshake.py); this module only reads,
writes and checks the credential. A refused request is answered with an Error for its rid and the
connection stays open. Long polls (wait, lease requests, event subscriptions) run as tasks of the
session, so one connection can carry many requests at once. Replies go through a bounded outbox drained
by one writer task, which writes everything queued in one send.

Each message read goes to routing.py, which routes it to what answers it, by who asks:
client_requests.py (jobs, blobs and bundles, the grid, tokens), worker_requests.py (a worker's leases
and results), follows.py (events and live output).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import anyio
import structlog
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from gridd import __version__
from gridd.broker.admission import ConnectionLimits
from gridd.broker.core import Broker
from gridd.broker.credentials import Credentials
from gridd.broker.principals import Principal
from gridd.broker.routing import Router
from gridd.broker.transport import TRANSPORT_ERRORS, send_final
from gridd.protocol.errors import (
    AuthFailed,
    ConnectionLost,
    ProtocolError,
    SlowConsumer,
)
from gridd.protocol.features import KNOWN as KNOWN_FEATURES
from gridd.protocol.frames import MAX_FRAME_BYTES, FrameDecoder, encode_frames
from gridd.protocol.handshake import BrokerHandshake, NeedData, Refuse
from gridd.protocol.messages import (
    Error,
    Hello,
    Message,
    PeerMessage,
    Welcome,
)

log = structlog.get_logger()

FLUSH_S = 5.0
REFUSAL_S = 2.0  # how long a refused peer gets to read why
OUTBOX_FRAMES = 1024
READ_BYTES = 65536


class Session:
    """Serves one connection from accept to close."""

    def __init__(
        self,
        stream: ByteStream,
        broker: Broker,
        credentials: Credentials,
        limits: ConnectionLimits | None = None,
        *,
        on_authenticated: Callable[[], None] | None = None,
    ) -> None:
        self._stream = stream
        self._broker = broker
        self._credentials = credentials
        self._limits = limits or ConnectionLimits()
        self._on_authenticated = on_authenticated
        self._decoder: FrameDecoder[PeerMessage] = FrameDecoder(PeerMessage, MAX_FRAME_BYTES)  # the handshake's, later
        self._pending: list[PeerMessage] = []
        self._outbox: MemoryObjectSendStream[Message]
        self._router: Router | None = None  # once authenticated
        self.principal: Principal | None = None  # who the peer speaks for, once it has authenticated
        self._serving = anyio.CancelScope()  # cancelled to end the session once the outbox is flushed
        self._flush_by = math.inf  # when the writer must give up sending what is queued
        self.peer = _peer_name(stream)

    async def run(self) -> None:
        with structlog.contextvars.bound_contextvars(peer=self.peer):
            hello = await self._handshake()
            if hello is None or self.principal is None:
                return
            if self._on_authenticated is not None:
                self._on_authenticated()
            log.debug("conn.opened", role=hello.role, name=hello.name)
            tx, rx = anyio.create_memory_object_stream[Message](OUTBOX_FRAMES)
            self._outbox = tx
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._write, rx)
                    with tx, self._broker.sessions.hold(self.principal, self._close_for_token):
                        async with anyio.create_task_group() as polls:
                            self._router = Router(
                                self._broker, self.principal, hello.name, tx, polls, self._fell_behind
                            )
                            with self._serving:
                                await self._serve(self._router)
                            polls.cancel_scope.cancel()
                    # The outbox is closed: the writer sends what is queued (a last Error frame, say)
                    # and ends; a peer that reads nothing gets FLUSH_S, then the connection is aborted
                    # (the listener closes the stream, unsent bytes and all).
                    tg.cancel_scope.deadline = min(self._flush_by, anyio.current_time() + FLUSH_S)
            finally:
                if self._router is not None:
                    self._router.workers.unregister()
                    self._router.clients.close()
                log.debug("conn.closed")

    # ---- I/O ----------------------------------------------------------------------------------------------

    async def _read(self) -> bytes:
        try:
            return await self._stream.receive(READ_BYTES)
        except TRANSPORT_ERRORS as exc:
            raise ConnectionLost(f"peer {self.peer} went away") from exc

    async def _receive(self) -> list[PeerMessage]:
        """The next messages: at least one, from as few reads as the bytes allow."""
        while not self._pending:
            self._pending = self._decoder.feed(await self._read())
        messages, self._pending = self._pending, []
        return messages

    async def _write(self, rx: MemoryObjectReceiveStream[Message]) -> None:
        with rx:
            async for first in rx:
                batch = [first]
                while True:
                    try:
                        batch.append(rx.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                try:
                    await self._stream.send(encode_frames(batch))
                except TRANSPORT_ERRORS:
                    return

    # ---- handshake ----------------------------------------------------------------------------------------

    async def _handshake(self) -> Hello | None:
        """The Hello of a peer that is in, or None (logged) when it was refused, went away or took too
        long to say who it is."""
        handshake: BrokerHandshake[PeerMessage] = BrokerHandshake(PeerMessage)
        try:
            with anyio.fail_after(self._limits.handshake_timeout_s):
                outcome = await self._admit(handshake)
        except ConnectionLost:
            return None
        except TimeoutError:
            log.debug("conn.handshake_timeout", timeout_s=self._limits.handshake_timeout_s)
            return None
        if isinstance(outcome, Refuse):
            if isinstance(outcome.error, AuthFailed):
                log.warning("auth.failed", error=str(outcome.error))
            else:
                log.warning("conn.refused", code=int(outcome.error.code), error=str(outcome.error))
            await send_final(self._stream, outcome.data, within_s=REFUSAL_S)
            await self._stream.aclose()
            return None
        self._decoder, self._pending = handshake.decoder, handshake.trailing
        return outcome

    async def _admit(self, handshake: BrokerHandshake[PeerMessage]) -> Hello | Refuse:
        """Drive the protocol's handshake: read until it decides, check the credential of a Hello, and
        send the Welcome of a peer that is in."""
        event = handshake.next_event()
        while isinstance(event, NeedData):
            handshake.receive_data(await self._read())
            event = handshake.next_event()
        if isinstance(event, Refuse):
            return event
        self.principal = await self._credentials.authenticate(event.hello.secret)
        decision = handshake.authenticated(self._welcome() if self.principal is not None else None)
        if isinstance(decision, Refuse):
            return decision
        await self._stream.send(decision.data)
        return event.hello

    def _welcome(self) -> Welcome:
        settings = self._broker.settings
        return Welcome(
            broker_version=__version__,
            lease_ttl_s=settings.lease_ttl_ms / 1000,
            heartbeat_s=settings.heartbeat_s,
            idle_timeout_s=self._limits.idle_timeout_s,
            max_command_bytes=settings.max_command_bytes,
            max_stdin_bytes=settings.max_stdin_bytes,
            features=sorted(KNOWN_FEATURES),
        )

    # ---- requests -----------------------------------------------------------------------------------------

    async def _serve(self, router: Router) -> None:
        while True:
            try:
                for message in await self._receive_with_liveness(router):
                    await router.route(message)
            except ProtocolError as exc:
                log.warning("conn.bad_frame", code=int(exc.code), error=str(exc))
                await self._outbox.send(Error(rid=None, code=exc.code, message=str(exc)))
                return
            except TimeoutError:
                if router.workers.link is not None:
                    log.warning("worker.silent", heartbeat_s=self._broker.settings.heartbeat_s)
                else:
                    log.info("conn.idle_closed", idle_timeout_s=self._limits.idle_timeout_s)
                return
            except ConnectionLost:
                return

    async def _receive_with_liveness(self, router: Router) -> list[PeerMessage]:
        """The next messages; TimeoutError when the peer has gone quiet for too long.

        A worker heart-beats every heartbeat_s: silence for three of them means it is gone. A client
        may be silent while a long poll of its own is in flight (`gridd wait`, `events`, the TUI), and
        otherwise for idle_timeout_s (gridd's client sends Ping when it has sent nothing for a third of
        that); a connection left open and unused past it is closed.
        """
        if router.workers.link is not None:
            with anyio.fail_after(self._broker.settings.heartbeat_s * 3):
                return await self._receive()
        while True:
            with anyio.move_on_after(self._limits.idle_timeout_s):
                return await self._receive()
            if not router.polls:
                raise TimeoutError

    async def _fell_behind(self) -> None:
        # The hub ended our stream: we fell behind. Say so (after what is queued) and close, rather
        # than grow memory. One FLUSH_S covers both the Error and the writer's last send.
        self._flush_by = anyio.current_time() + FLUSH_S
        exc = SlowConsumer("event subscriber fell too far behind and was dropped; subscribe again")
        with anyio.move_on_after(FLUSH_S):
            await self._outbox.send(Error(rid=None, code=exc.code, message=str(exc)))
        self._serving.cancel()

    def _close_for_token(self, why: str) -> None:
        """Its token was revoked or has expired: say so (after what is queued) and end the session."""
        exc = AuthFailed(f"{why}: the broker closed this connection")
        log.info("conn.token_closed", reason=why)
        self._flush_by = anyio.current_time() + FLUSH_S
        with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._outbox.send_nowait(Error(rid=None, code=exc.code, message=str(exc)))
        self._serving.cancel()


def _peer_name(stream: ByteStream) -> str:
    try:
        address = stream.extra(SocketAttribute.remote_address)
    except Exception:  # noqa: BLE001 - a name for logs only
        return "?"
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return str(address)

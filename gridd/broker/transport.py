"""What a connection speaks, decided by its first bytes: TLS 1.3, or plain TCP under --insecure; and the
broker's side of every transport failure (TRANSPORT_ERRORS, one last frame sent with send_final).

Rule: a peer on the other transport gets one line that says how to fix it, and the connection closes.
A plain peer (its first frame starts with a length prefix) of a TLS broker is sent an Error frame it can
read; a TLS peer of a plain broker cannot read a frame, but the one it gets makes its TLS fail with a
"wrong version number" that the client turns into its own line. Every TLS connection starts with the
broker's BrokerCA frame (connection_messages.py says why).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Mapping
from typing import Any

import anyio
import structlog
from anyio.abc import ByteStream
from anyio.streams.tls import TLSStream

from gridd.broker.tls import BrokerTLS
from gridd.protocol.errors import GriddError, TransportMismatch
from gridd.protocol.frames import encode_frame
from gridd.protocol.messages import Error

log = structlog.get_logger()

TLS_HANDSHAKE = 0x16  # the content type of the record that carries a ClientHello
_FIRST_BYTES = 4096

TLS_REQUIRED = (
    "this broker speaks TLS, and this peer plain TCP (it was started with --insecure or GRIDD_INSECURE=1): "
    "drop --insecure here, or restart the broker with --insecure too"
)
PLAIN_ONLY = "this broker runs with --insecure (plain TCP); the peer speaks TLS"
TRANSPORT_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
"""What anyio and the OS raise when a peer's connection breaks: the broker's side maps these, and only
these, to "the peer went away" (the client's side maps the same set in gridd/client/connection.py)."""
REFUSE_S = 0.5  # what a refused peer gets to hear why: never wait on a stranger longer


async def secure(stream: ByteStream, tls: BrokerTLS | None, peer: str) -> ByteStream | None:
    """The stream to run the session on, or None when the peer was refused (logged; closed by the caller).

    The caller bounds the time this takes (the handshake timeout): a stranger that sends nothing, or
    half a TLS handshake, holds only its own unauthenticated connection slot until then.
    """
    first = await stream.receive(_FIRST_BYTES)
    replay = _Replay(stream, first)
    speaks_tls = first[0] == TLS_HANDSHAKE
    if tls is None:
        if speaks_tls:
            log.warning("conn.tls_to_plain_broker", peer=peer, error=PLAIN_ONLY)
            await _refuse(stream, PLAIN_ONLY)
            return None
        return replay
    if not speaks_tls:
        log.warning("conn.plain_to_tls_broker", peer=peer)
        await _refuse(stream, TLS_REQUIRED)
        return None
    try:
        secured = await TLSStream.wrap(replay, server_side=True, ssl_context=tls.context, standard_compatible=False)
    except (ssl.SSLError, *TRANSPORT_ERRORS) as exc:
        # A peer that checked our certificate and went away (another broker's credential) ends here too.
        log.info("conn.tls_failed", peer=peer, error=str(exc) or type(exc).__name__)
        return None
    await secured.send(tls.ca_frame)
    return secured


async def _refuse(stream: ByteStream, message: str) -> None:
    await send_final(stream, TransportMismatch(message), within_s=REFUSE_S)


async def send_final(stream: ByteStream, error: GriddError | bytes, *, within_s: float) -> None:
    """Send one last frame (an Error saying `error`, or a frame already encoded) if the peer takes it
    within `within_s`; a peer that has gone, or reads nothing, is not waited for. The caller closes."""
    data = error if isinstance(error, bytes) else encode_frame(Error(rid=None, code=error.code, message=str(error)))
    with anyio.move_on_after(within_s), contextlib.suppress(*TRANSPORT_ERRORS):
        await stream.send(data)


class _Replay(ByteStream):
    """The socket stream with the bytes already read put back in front (a peek that needs no socket API)."""

    def __init__(self, stream: ByteStream, first: bytes) -> None:
        self._stream = stream
        self._first = first

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._first:
            data, self._first = self._first[:max_bytes], self._first[max_bytes:]
            return data
        return await self._stream.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self._stream.send(item)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Any]:
        return self._stream.extra_attributes

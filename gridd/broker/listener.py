"""The accept loop: one Session per connection, each in its own task; one peer's failure is its own.

Rule: nothing a peer does stops the loop. Out of file descriptors (EMFILE/ENFILE), accept backs off and
tries again (logging `accept.fd_exhausted` once per episode) while sessions time out and free theirs;
anyio's own `serve` would let the error end the task group, and with it the broker.
"""

from __future__ import annotations

import contextlib
import errno
import resource
import socket
from collections.abc import Callable, Coroutine
from typing import Any, cast

import anyio
import structlog
from anyio.abc import ByteStream, SocketAttribute, SocketListener, SocketStream, TaskGroup, TaskStatus

from gridd.broker.admission import Admission, ConnectionLimits
from gridd.broker.core import Broker
from gridd.broker.credentials import Credentials
from gridd.broker.session import Session
from gridd.broker.tls import BrokerTLS
from gridd.broker.transport import REFUSE_S, TRANSPORT_ERRORS, secure, send_final
from gridd.protocol.errors import CannotListen, TooManyConnections

log = structlog.get_logger()

ACCEPT_BACKOFF_S = (0.01, 1.0)  # first and longest pause after a failed accept
_OUT_OF_FILES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# A peer that vanished (power cut, cable) while a long poll of it waits is found by the kernel in ~2 min.
_KEEPALIVE = {"TCP_KEEPIDLE": 60, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 6}


async def serve_peers(
    host: str,
    port: int,
    broker: Broker,
    credentials: Credentials,
    limits: ConnectionLimits | None = None,
    *,
    tls: BrokerTLS | None = None,
    admission: Admission | None = None,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on host:port (port 0: any free port) and report the bound port through task_status.
    Every connection speaks TLS with `tls`; plain TCP only when it is None (--insecure). `admission`
    (made from `limits` if not given) counts the connections, which the broker's metrics read."""
    admission = admission or Admission(limits or ConnectionLimits())
    try:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    except OSError as exc:  # in use, or not an address of this machine
        raise CannotListen(f"cannot listen on {host}:{port} (--listen): {exc.strerror or exc}") from None
    async with listener, anyio.create_task_group() as tg:
        bound = listener.extra(SocketAttribute.local_port)
        log.info("broker.listening", host=host, port=bound)
        task_status.started(bound)
        for one in listener.listeners:  # TCP listeners, one per address family bound
            tg.start_soon(
                accept_loop,
                cast(SocketListener, one),
                tg,
                lambda stream: _serve_one(stream, broker, credentials, admission, tls),
            )


async def accept_loop(
    listener: SocketListener, tg: TaskGroup, handler: Callable[[SocketStream], Coroutine[Any, Any, None]]
) -> None:
    """Accept forever, starting `handler` in `tg` for each connection; failed accepts back off."""
    pause = 0.0
    exhausted_at: float | None = None
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno in _OUT_OF_FILES:
                if exhausted_at is None:
                    exhausted_at = anyio.current_time()
                    log.error("accept.fd_exhausted", error=str(exc), open_files=_soft_limit())
            else:  # e.g. a peer that reset before it was accepted
                log.warning("accept.failed", error=str(exc))
            pause = min(max(pause * 2, ACCEPT_BACKOFF_S[0]), ACCEPT_BACKOFF_S[1])
            await anyio.sleep(pause)
            continue
        if exhausted_at is not None:
            log.warning("accept.fd_recovered", after_s=round(anyio.current_time() - exhausted_at, 1))
            exhausted_at = None
        pause = 0.0
        tg.start_soon(handler, stream)


async def _serve_one(
    stream: SocketStream, broker: Broker, credentials: Credentials, admission: Admission, tls: BrokerTLS | None
) -> None:
    admission.connections += 1
    try:
        await _serve_stream(stream, broker, credentials, admission, tls)
    finally:
        admission.connections -= 1


async def _serve_stream(
    stream: SocketStream, broker: Broker, credentials: Credentials, admission: Admission, tls: BrokerTLS | None
) -> None:
    async with stream:  # closing it aborts: whatever a peer that reads nothing left unsent is dropped
        address = _remote_host(stream)
        ticket = admission.admit(address)
        # A peer refused at once is still told why in its own transport (TLS or not), within REFUSE_S.
        secured = None
        with anyio.move_on_after(admission.limits.handshake_timeout_s if ticket else REFUSE_S):
            with contextlib.suppress(*TRANSPORT_ERRORS):
                secured = await secure(stream, tls, address)
        if ticket is None:
            if secured is not None:
                await _refuse(secured, address)
            return
        if secured is None:
            ticket.release()
            return
        _keep_alive(stream)
        try:
            await Session(secured, broker, credentials, admission.limits, on_authenticated=ticket.release).run()
        except Exception:
            log.exception("session.crashed")
        finally:
            ticket.release()


async def _refuse(stream: ByteStream, address: str) -> None:
    """Say why in one frame if the socket takes it at once; never wait on a stranger."""
    exc = TooManyConnections(
        f"the broker has too many connections that have not authenticated yet (from {address} or in all); "
        "try again shortly"
    )
    await send_final(stream, exc, within_s=REFUSE_S)


def _keep_alive(stream: SocketStream) -> None:
    with contextlib.suppress(Exception):  # best effort: not every platform has every option
        sock = stream.extra(SocketAttribute.raw_socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in _KEEPALIVE.items():
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def _remote_host(stream: SocketStream) -> str:
    try:
        address = stream.extra(SocketAttribute.remote_address)
    except Exception:  # noqa: BLE001 - an unknown peer shares one bucket
        return "?"
    return str(address[0]) if isinstance(address, tuple) else str(address)


def _soft_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]

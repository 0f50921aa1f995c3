"""The accept loop: one Session per connection, each in its own task; one peer's failure is its own."""

from __future__ import annotations

import anyio
import structlog
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

from gridd.broker.core import Broker
from gridd.broker.session import Session

log = structlog.get_logger()


async def serve_peers(
    host: str, port: int, broker: Broker, token: str, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Listen on host:port (port 0: any free port) and report the bound port through task_status."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    async with listener:
        bound = listener.extra(SocketAttribute.local_port)
        log.info("broker.listening", host=host, port=bound)
        task_status.started(bound)
        await listener.serve(lambda stream: _serve_one(stream, broker, token))


async def _serve_one(stream: SocketStream, broker: Broker, token: str) -> None:
    async with stream:
        try:
            await Session(stream, broker, token).run()
        except Exception:
            log.exception("session.crashed")

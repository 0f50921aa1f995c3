"""A TCP forwarder on 127.0.0.1 that records every byte it carries, both ways: what a listener on the
network between peers and broker would see. Bounded: it keeps at most MAX_RECORD bytes each way (and
forwards the rest), and its connections end with the test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import ByteStream, SocketAttribute

MAX_RECORD = 64 * 1024 * 1024
_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class RecordingProxy:
    def __init__(self) -> None:
        self.to_broker = bytearray()  # what peers sent
        self.from_broker = bytearray()  # what the broker sent
        self.connections = 0
        self.port = 0

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def seen(self, needle: bytes) -> bool:
        """Whether `needle` crossed the wire, either way."""
        return needle in self.to_broker or needle in self.from_broker


@asynccontextmanager
async def recording_proxy(target_port: int) -> AsyncIterator[RecordingProxy]:
    proxy = RecordingProxy()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    proxy.port = listener.extra(SocketAttribute.local_port)

    async def pump(source: ByteStream, sink: ByteStream, record: bytearray) -> None:
        with contextlib.suppress(*_ERRORS):
            while True:
                data = await source.receive(65536)
                if len(record) < MAX_RECORD:
                    record += data[: MAX_RECORD - len(record)]
                await sink.send(data)
        with contextlib.suppress(*_ERRORS):
            await sink.send_eof()

    async def forward(client: ByteStream) -> None:
        proxy.connections += 1
        async with client:
            try:
                broker = await anyio.connect_tcp("127.0.0.1", target_port)
            except OSError:
                return
            async with broker, anyio.create_task_group() as tg:
                tg.start_soon(pump, client, broker, proxy.to_broker)
                tg.start_soon(pump, broker, client, proxy.from_broker)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, forward, tg)
        yield proxy
        tg.cancel_scope.cancel()

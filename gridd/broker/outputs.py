"""Live output: relays what running attempts write to the clients that follow those jobs.

Rules: nothing is stored here and nothing waits. A chunk goes to each follower that has room and is
dropped for one that has not; a follower completes from the output recorded with the result, by
offset, so a dropped chunk is never lost to it, only late. What a worker pushes is bounded here: bytes
past max_output_bytes of a stream (which the result would not keep either) are dropped, and each
follower holds at most FOLLOWER_BYTES not yet sent, so no worker can grow the broker's memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from gridd.protocol.messages import OutputChunk

FOLLOWER_BUFFER = 256  # chunks
FOLLOWER_BYTES = 4 * 1024 * 1024  # of chunks queued for one follower


class Follower:
    """The chunks relayed to one follower, as its session reads them (counting what it took out)."""

    def __init__(self, rx: MemoryObjectReceiveStream[OutputChunk]) -> None:
        self._rx = rx
        self.queued_bytes = 0

    def __aiter__(self) -> Follower:
        return self

    async def __anext__(self) -> OutputChunk:
        try:
            chunk = await self._rx.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        self.queued_bytes -= len(chunk.data)
        return chunk

    def receive_nowait(self) -> OutputChunk:
        chunk = self._rx.receive_nowait()
        self.queued_bytes -= len(chunk.data)
        return chunk


class OutputRelay:
    """job id -> the streams of the clients following it."""

    def __init__(self, max_output_bytes: int) -> None:
        self._max_output_bytes = max_output_bytes
        self._followers: dict[str, list[tuple[MemoryObjectSendStream[OutputChunk], Follower]]] = {}

    @contextmanager
    def follow(self, job_id: str) -> Iterator[Follower]:
        tx, rx = anyio.create_memory_object_stream[OutputChunk](FOLLOWER_BUFFER)
        entry = (tx, Follower(rx))
        self._followers.setdefault(job_id, []).append(entry)
        try:
            with rx:
                yield entry[1]
        finally:
            followers = self._followers.get(job_id, [])
            if entry in followers:
                followers.remove(entry)
            if not followers:
                self._followers.pop(job_id, None)
            tx.close()

    def relay(self, chunks: Sequence[OutputChunk]) -> None:
        for chunk in chunks:
            followers = self._followers.get(chunk.job_id)
            if not followers:
                continue
            room = self._max_output_bytes - chunk.offset
            if room <= 0:
                continue  # past what is kept of the stream
            if len(chunk.data) > room:
                chunk = msgspec.structs.replace(chunk, data=chunk.data[:room])
            for tx, follower in followers:
                # A follower without room completes from the recorded output instead.
                if follower.queued_bytes + len(chunk.data) > FOLLOWER_BYTES:
                    continue
                with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    tx.send_nowait(chunk)
                    follower.queued_bytes += len(chunk.data)

"""Live output: relays what running attempts write to the clients that follow those jobs.

Rule: nothing is stored here and nothing waits. A chunk goes to each follower that has room and is
dropped for one that has not; a follower completes from the output recorded with the result, by
offset, so a dropped chunk is never lost to it, only late.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from gridd.protocol.messages import OutputChunk

FOLLOWER_BUFFER = 256  # chunks


class OutputRelay:
    """job id -> the streams of the clients following it."""

    def __init__(self) -> None:
        self._followers: dict[str, list[MemoryObjectSendStream[OutputChunk]]] = {}

    @contextmanager
    def follow(self, job_id: str) -> Iterator[MemoryObjectReceiveStream[OutputChunk]]:
        tx, rx = anyio.create_memory_object_stream[OutputChunk](FOLLOWER_BUFFER)
        self._followers.setdefault(job_id, []).append(tx)
        try:
            with rx:
                yield rx
        finally:
            followers = self._followers.get(job_id, [])
            if tx in followers:
                followers.remove(tx)
            if not followers:
                self._followers.pop(job_id, None)
            tx.close()

    def relay(self, chunks: Sequence[OutputChunk]) -> None:
        for chunk in chunks:
            for tx in self._followers.get(chunk.job_id, ()):
                # A follower without room completes from the recorded output instead.
                with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    tx.send_nowait(chunk)

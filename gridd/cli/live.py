"""`submit --wait` output: written as the job writes it, then completed from what was recorded.

Chunks are offset-addressed, so a chunk that arrives twice is written once and one that was dropped
on the way leaves a gap that the recorded output fills at the end. A new attempt (a new lease)
starts its streams again from 0, as a re-run command would on a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gridd.protocol.messages import AttemptView, OutputChunk

STREAMS = ("stdout", "stderr")


class LiveOutput:
    """What has been written of one job's attempt, stream by stream."""

    def __init__(self, job_id: str) -> None:
        self._job_id = job_id
        self._lease: int | None = None
        self._written = dict.fromkeys(STREAMS, 0)

    def chunk(self, chunk: OutputChunk) -> None:
        """Write the part of a chunk not written yet (nothing if a gap comes before it)."""
        if chunk.lease != self._lease:
            if self._lease is not None:
                print(f"gridd: job {self._job_id} is running again (a new attempt)", file=sys.stderr, flush=True)
            self._lease, self._written = chunk.lease, dict.fromkeys(STREAMS, 0)
        done = self._written[chunk.stream]
        if chunk.offset <= done < chunk.offset + len(chunk.data):
            _write(chunk.stream, chunk.data[done - chunk.offset :])
            self._written[chunk.stream] = chunk.offset + len(chunk.data)

    def finish(self, attempts: Sequence[AttemptView], recorded: dict[str, bytes]) -> None:
        """Write what the recorded output (of the last attempt that ended with a result) adds."""
        ended = [a for a in attempts if a.outcome != "lease_expired"]
        same_attempt = bool(ended) and ended[-1].lease == self._lease
        for stream in STREAMS:
            _write(stream, recorded[stream][self._written[stream] if same_attempt else 0 :])


def _write(stream: str, data: bytes) -> None:
    out = sys.stdout if stream == "stdout" else sys.stderr
    out.buffer.write(data)
    out.flush()

"""Delivery: the results of finished jobs and the output of running ones, on their way to the broker.

Rules:
- A result stays here until the broker has answered for it (recorded, or refused as stale): its lease is
  among those the worker still answers for (heartbeats, re-registration after a reconnection).
- Results go in batches of what arrived meanwhile, as many as fit comfortably in one frame; one task per
  connection sends them, woken by each arrival. While more short jobs are about to end (the running
  jobs say so with each result), a result waits up to LINGER_S for them, so that a frame (and the
  broker's transaction, with its fsync) serves several jobs instead of one; a lone job's result goes
  at once.
- Output of running jobs goes every OUTPUT_EVERY_S, best effort: the result carries all of it anyway.
"""

from __future__ import annotations

import anyio
import structlog

from gridd.client.connection import Connection
from gridd.protocol.messages import AppendOutput, CompleteJobs, JobResult, LeaseRef, OutputChunk
from gridd.worker.nudge import Nudge
from gridd.worker.runner import OUTPUT_EVERY_S

log = structlog.get_logger()

RESULTS_PER_FRAME_BYTES = 8 * 1024 * 1024
LINGER_S = 0.005  # how long a result may wait for those of the short jobs about to end
LINGER_RESULTS = 64  # no wait once this many are ready


class Delivery:
    """Results not yet acknowledged, and output not yet sent (see the module's rules)."""

    def __init__(self) -> None:
        self._results: list[JobResult] = []
        self._more_soon = False  # whether the last result said others will follow within LINGER_S
        self._outputs: list[OutputChunk] = []
        self._arrived = Nudge()  # waited for by the sender of the connection of the moment
        self._emptied: anyio.Event | None = None  # set once no result is left, while someone waits for it

    def add(self, result: JobResult, *, more_soon: bool = False) -> None:
        """A result to deliver; `more_soon`: other short jobs are running, whose results may join it."""
        self._results.append(result)
        self._more_soon = more_soon
        self._arrived()

    def add_output(self, chunks: list[OutputChunk]) -> None:
        self._outputs.extend(chunks)

    @property
    def pending(self) -> int:
        return len(self._results)

    def held_leases(self) -> list[LeaseRef]:
        """The leases of results not acknowledged yet."""
        return [LeaseRef(job_id=r.job_id, lease=r.lease) for r in self._results]

    async def wait_delivered(self) -> None:
        """Until every result is acknowledged."""
        while self._results:
            if self._emptied is None:
                self._emptied = anyio.Event()
            await self._emptied.wait()

    async def send_results(self, conn: Connection) -> None:
        """Deliver results on `conn` as they come, until it fails."""
        while True:
            if not self._results:
                await self._arrived.wait()
                continue
            if self._more_soon and len(self._results) < LINGER_RESULTS:
                with anyio.move_on_after(LINGER_S):
                    while self._more_soon and len(self._results) < LINGER_RESULTS:
                        await self._arrived.wait()
            batch = _batch(self._results)
            reply = await conn.request(lambda rid: CompleteJobs(rid=rid, results=batch))  # noqa: B023 - at once
            for outcome in reply.outcomes:
                if outcome.code:
                    log.warning("result.refused", job_id=outcome.job_id, error=outcome.message)
            delivered = {id(r) for r in batch}
            self._results = [r for r in self._results if id(r) not in delivered]
            if not self._results and self._emptied is not None:
                self._emptied.set()
                self._emptied = None

    async def send_output(self, conn: Connection) -> None:
        """Pass running jobs' output on, every OUTPUT_EVERY_S."""
        while True:
            await anyio.sleep(OUTPUT_EVERY_S)
            if self._outputs:
                chunks, self._outputs = self._outputs, []
                await conn.send(AppendOutput(chunks=chunks))


def _batch(results: list[JobResult]) -> list[JobResult]:
    """As many results as fit comfortably in one frame (at least one)."""
    batch: list[JobResult] = []
    size = 0
    for result in results:
        size += len(result.stdout) + len(result.stderr) + 256
        if batch and size > RESULTS_PER_FRAME_BYTES:
            break
        batch.append(result)
    return batch

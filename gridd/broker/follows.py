"""What a client follows on one connection: the event stream (Subscribe) and a job's live output
(FollowOutput). Each runs as a long poll of the session, pushing frames into its outbox until the
connection ends.

Rules: the snapshot and the subscription are taken in one step (no await between), so the deltas that
follow apply to exactly that snapshot. A subscriber that falls behind is dropped by the hub rather than
let the broker's memory grow; the session then says so (SlowConsumer) and closes. Live output is best
effort: a follower completes from the recorded output, by offset.
"""

from __future__ import annotations

import contextlib

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from gridd.broker.client_requests import ClientRequests
from gridd.broker.core import Broker
from gridd.protocol.errors import OperationRefused
from gridd.protocol.messages import (
    Error,
    EventBatch,
    FollowOutput,
    Message,
    OutputChunks,
    OutputFollowed,
    Subscribe,
    Subscribed,
)

# Small enough that the outbox (session.OUTBOX_FRAMES) bounds what a slow subscriber's socket backs up.
EVENTS_PER_FRAME = 64
CHUNKS_PER_FRAME = 64


async def follow_events(broker: Broker, outbox: MemoryObjectSendStream[Message], m: Subscribe) -> bool:
    """Send the snapshot, then every event batch until the connection ends (False) or the hub drops
    this subscriber for falling behind (True: the caller says so and closes)."""
    queues, workers = broker.snapshot()
    with broker.hub.subscribe() as subscription, anyio.CancelScope() as pumping:
        # Dropped while blocked on a full outbox (the peer reads nothing, so the writer is stuck on
        # the socket): stop waiting there, or the caller's close would never happen.
        subscription.on_drop = pumping.cancel
        try:
            await outbox.send(Subscribed(rid=m.rid, queues=queues, workers=workers))
            while (batch := await subscription.next_batch()) is not None:
                for start in range(0, len(batch), EVENTS_PER_FRAME):
                    await outbox.send(EventBatch(events=list(batch[start : start + EVENTS_PER_FRAME])))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
    return True  # the hub ended our stream: we fell behind


async def follow_output(
    broker: Broker, outbox: MemoryObjectSendStream[Message], requests: ClientRequests, m: FollowOutput
) -> None:
    """Answer OutputFollowed, then push what the job's running attempts write until the connection ends.
    An unknown job, or another owner's, is refused with an Error for the rid instead."""
    try:
        await broker.show(m.job_id)  # an unknown job is refused, not followed forever
        await requests.check_owned([m.job_id], "follow the output of")
    except OperationRefused as exc:
        await outbox.send(Error(rid=m.rid, code=exc.code, message=str(exc)))
        return
    with broker.outputs.follow(m.job_id) as chunks:
        try:
            await outbox.send(OutputFollowed(rid=m.rid))
            async for chunk in chunks:
                batch = [chunk]
                with contextlib.suppress(anyio.WouldBlock):
                    while len(batch) < CHUNKS_PER_FRAME:
                        batch.append(chunks.receive_nowait())
                await outbox.send(OutputChunks(chunks=batch))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return

"""What a client follows: the event stream (Subscribe, then Event deltas) and a job's live output
(FollowOutput, then OutputChunks pushes). The pushes carry no rid.
"""

from __future__ import annotations

import msgspec

from gridd.protocol.base import Message, Reply, Request
from gridd.protocol.fields import EpochMs, JobId
from gridd.protocol.records import OutputChunk, WorkerView


class Subscribed(Reply, frozen=True, tag="events.subscribed"):
    """The snapshot the following Event deltas apply to: jobs per queue and state, connected workers."""

    queues: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    workers: list[WorkerView] = msgspec.field(default_factory=list)


class Subscribe(Request[Subscribed], frozen=True, tag="events.subscribe"):
    """Follow the event stream; deltas arrive as Event frames after Subscribed."""


class Event(Message, frozen=True, tag="event"):
    """Something that happened (job.submitted, job.started, job.succeeded, worker.joined, ...)."""

    kind: str
    ts_ms: EpochMs
    job_id: str | None = None
    worker: str | None = None
    queue: str | None = None
    state: str | None = None
    attempt: int | None = None
    exit_code: int | None = None
    message: str | None = None
    previous: str | None = None  # for a job event: the state the job left (None: a new job)


class EventBatch(Message, frozen=True, tag="events"):
    """Several events, in order: how a subscription delivers them."""

    events: list[Event]


class OutputFollowed(Reply, frozen=True, tag="job.output_followed"):
    """The broker follows the job's output: OutputChunks pushes follow."""


class FollowOutput(Request[OutputFollowed], frozen=True, tag="job.output_follow"):
    """Receive what the job's running attempts write, as they write it (OutputChunks pushes)."""

    job_id: JobId


class OutputChunks(Message, frozen=True, tag="job.output_chunks"):
    """Broker push to a follower. Best effort: a follower completes from the recorded output."""

    chunks: list[OutputChunk]

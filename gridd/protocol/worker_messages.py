"""What a worker says to the broker and the replies: registration, leases (request, renew, return),
results and live output; and what the broker pushes to it (lease revocations).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from gridd.protocol.base import Message, Reply, Request
from gridd.protocol.fields import EpochMs, InstanceId, MemoryMb, Name, StateName, WorkerCpus
from gridd.protocol.records import JobResult, LeasedJob, LeaseRef, Outcome, OutputChunk


class WorkerRegistered(Reply, frozen=True, tag="worker.registered"):
    """`lost`: attached leases that are no longer current; the worker must stop those jobs."""

    lost: list[LeaseRef]


class RegisterWorker(Request[WorkerRegistered], frozen=True, tag="worker.register"):
    """A worker announces itself and re-attaches the jobs it is still running."""

    host: Name
    slots: Annotated[int, msgspec.Meta(ge=1, le=4096)]
    queues: Annotated[list[Name], msgspec.Meta(min_length=1)]
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    running: list[LeaseRef] = msgspec.field(default_factory=list)
    # False: the same worker process reconnecting, which names every lease it ever received.
    restarted: bool = True
    tasks: list[Name] = msgspec.field(default_factory=list)  # the task modules it serves (gridd worker --tasks)
    state: StateName = "available"  # see WORKER_STATES
    # What it has in all (None: no limit, an older worker); its tags include os and arch.
    cpus: WorkerCpus | None = None
    memory_mb: MemoryMb | None = None
    # The worker's instance id, kept in its work dir: only the instance a lease was granted to may re-attach
    # it, end it, or have it failed by a restart. "": an older worker, which proves nothing.
    instance: InstanceId = ""


class JobsLeased(Reply, frozen=True, tag="lease.granted"):
    jobs: list[LeasedJob]


class RequestJobs(Request[JobsLeased], frozen=True, tag="lease.request"):
    """Long poll: answered as soon as at least one job is leased to this worker."""

    max_jobs: Annotated[int, msgspec.Meta(ge=1, le=4096)]
    # The free budget: what the jobs leased for this request may claim in all (None: no limit). Each job
    # must also fit the worker's registered cpus and memory.
    cpus: WorkerCpus | None = None
    memory_mb: MemoryMb | None = None


class LeasesRenewed(Reply, frozen=True, tag="lease.renewed"):
    """`lost`: leases that are no longer current (cancelled, expired); the worker stops those jobs."""

    lost: list[LeaseRef]
    deadline_ms: EpochMs


class RenewLeases(Request[LeasesRenewed], frozen=True, tag="lease.renew"):
    leases: list[LeaseRef]


class JobsCompleted(Reply, frozen=True, tag="job.completed"):
    """One outcome per result: code 0 recorded, STALE_LEASE refused (the job's outcome was not changed)."""

    outcomes: list[Outcome]


class CompleteJobs(Request[JobsCompleted], frozen=True, tag="job.complete"):
    results: Annotated[list[JobResult], msgspec.Meta(min_length=1)]


class LeasesReturned(Reply, frozen=True, tag="lease.returned"):
    """The leases were handed back; their jobs are queued again."""


class ReturnLeases(Request[LeasesReturned], frozen=True, tag="lease.return"):
    """A draining worker hands jobs back unfinished; they are queued again without spending an attempt."""

    leases: Annotated[list[LeaseRef], msgspec.Meta(min_length=1)]


class AppendOutput(Message, frozen=True, tag="job.output_append"):
    """Worker push: output of attempts still running (no reply; the result carries it all anyway)."""

    chunks: list[OutputChunk]


class ReportWorkerState(Message, frozen=True, tag="worker.state"):
    """Worker push (no reply): its state changed. A worker that is not `accepting` has withdrawn its lease
    request; the broker answers a pending one at once, empty, rather than lease jobs it would hand back."""

    state: StateName
    accepting: bool


class RevokeLeases(Message, frozen=True, tag="lease.revoke"):
    """Broker push: stop these jobs now (they were cancelled); their results will be refused."""

    leases: list[LeaseRef]

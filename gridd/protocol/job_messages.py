"""What a client asks about jobs, and the replies: submit, show, explain, list, read output, control, wait,
read results, purge.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from gridd.protocol.base import Reply, Request
from gridd.protocol.features import SUBMIT_KEY
from gridd.protocol.fields import Count, EpochMs, JobId
from gridd.protocol.idempotency import KeyPart, KeyTtl, SubmitKeyName
from gridd.protocol.records import (
    AttemptView,
    DependencyView,
    JobSpec,
    JobView,
    Outcome,
    TaskOutcome,
    WorkerFit,
)

MAX_LIST_ROWS = 10_000  # a JobsListed carries at most this many jobs (page on with `before`)


class JobsAccepted(Reply, frozen=True, tag="job.accepted"):
    """Every job of the submit is durable; ids in the order submitted."""

    job_ids: list[str]
    group: str | None = None


class SubmitJobs(Request[JobsAccepted], frozen=True, tag="job.submit"):
    """Jobs to run. `new_group` puts them in a new group (with `max_running` of them running at once);
    `group` adds them to an existing one (the later chunks of a large submission). Every job waits
    until each job (or group) named in `after` has succeeded.

    `key` makes the submit idempotent (protocol/idempotency.py): the same key with the same request
    again is answered with the first's jobs, kept `key_ttl_s` (None: DEFAULT_KEY_TTL_S). A submit sent
    in several requests (chunks) sends the key with each, `key_part` counting them from 0."""

    jobs: Annotated[list[JobSpec], msgspec.Meta(min_length=1)]
    after: list[JobId] = msgspec.field(default_factory=list)
    new_group: bool = False
    group: JobId | None = None
    max_running: Annotated[int, msgspec.Meta(ge=1, le=2**31)] | None = None
    key: SubmitKeyName | None = None
    key_ttl_s: KeyTtl | None = None
    key_part: KeyPart = 0

    def features_used(self) -> list[str]:
        found = [SUBMIT_KEY] if self.key is not None else []
        for spec in self.jobs:
            found.extend(spec.features_used())
        return found


class JobShown(Reply, frozen=True, tag="job.shown"):
    job: JobView
    attempts: list[AttemptView]


class ShowJob(Request[JobShown], frozen=True, tag="job.show"):
    job_id: JobId


class JobExplained(Reply, frozen=True, tag="job.explained"):
    """`reason`: the one line that says why the job is where it is; `causes`: the job's own causes (held,
    dependencies, its group's --max-running, a retry delay); `workers`: each connected worker's first
    obstacle (a queued job only); `remedy`: what would make it run, in one line (None: nothing to do)."""

    job: JobView
    attempts: list[AttemptView]
    reason: str
    causes: list[str] = msgspec.field(default_factory=list)
    workers: list[WorkerFit] = msgspec.field(default_factory=list)
    remedy: str | None = None
    dependencies: list[DependencyView] = msgspec.field(default_factory=list)
    not_before_ms: EpochMs | None = None  # a retried job is not leased before this time (its retry delay)


class ExplainJob(Request[JobExplained], frozen=True, tag="job.why"):
    """Why a job is not running (or where it runs, or how it ended): `gridd why`."""

    job_id: JobId


class JobsListed(Reply, frozen=True, tag="job.listed"):
    """A page of jobs. `more`: the page was cut by its size (LIST_REPLY_BYTES), not by `limit`, so there
    may be more jobs older than its last one (an older broker never sets it: a short page ended it)."""

    jobs: list[JobView]
    more: bool = False


class ListJobs(Request[JobsListed], frozen=True, tag="job.list"):
    """The newest jobs first, at most `limit` (0: no limit) and at most MAX_LIST_ROWS per reply."""

    state: str | None = None
    queue: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=0, le=2**62)] = 1000
    before: JobId | None = None  # page: only jobs submitted before this one
    group: JobId | None = None


class OutputRead(Reply, frozen=True, tag="job.output_read"):
    data: bytes
    truncated: bool


class ReadOutput(Request[OutputRead], frozen=True, tag="job.output"):
    job_id: JobId
    stream: str = "stdout"  # stdout | stderr


class JobsControlled(Reply, frozen=True, tag="job.controlled"):
    outcomes: list[Outcome]


class ControlJobs(Request[JobsControlled], frozen=True, tag="job.control"):
    """cancel | retry | hold | release, for each job named."""

    action: str
    job_ids: Annotated[list[JobId], msgspec.Meta(min_length=1)]


class JobsFinished(Reply, frozen=True, tag="job.finished"):
    jobs: list[JobView]


class WaitJobs(Request[JobsFinished], frozen=True, tag="job.wait"):
    """Answered when every named job has finished (a long poll). With `any`: as soon as at least one
    has, with the finished ones only (how a client iterates jobs as they complete)."""

    job_ids: Annotated[list[JobId], msgspec.Meta(min_length=1)]
    any: bool = False


class ResultsRead(Reply, frozen=True, tag="job.results_read"):
    """Results for the first len(results) of the ids asked for, in their order."""

    results: list[TaskOutcome]


class ReadResults(Request[ResultsRead], frozen=True, tag="job.results"):
    """The recorded results of task jobs (a reply stays under the frame limit: read on with the rest).
    With `wait_any`: a long poll, answered once at least one has finished, with the finished ones only."""

    job_ids: Annotated[list[JobId], msgspec.Meta(min_length=1)]
    wait_any: bool = False


class JobsPurged(Reply, frozen=True, tag="job.purged"):
    purged: Count
    older_than_s: float = 0.0  # what it was run with


class PurgeJobs(Request[JobsPurged], frozen=True, tag="job.purge"):
    """Remove the finished jobs that finished more than `older_than_s` ago (None: the broker's --keep),
    with their attempts, output, results and the blobs only they refer to."""

    older_than_s: Annotated[float, msgspec.Meta(ge=0, le=2**40)] | None = None

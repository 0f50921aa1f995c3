"""The values carried inside messages (never a frame of their own): what a job is, how an attempt ended,
what clients see of jobs, workers, bundles and tokens. The same schema rules as every message
(messages.py): new fields get defaults and go last, no field changes type.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from gridd.protocol.base import Record
from gridd.protocol.features import GANG, RETRY_ON, START_AT
from gridd.protocol.fields import (
    BlobId,
    BundleRef,
    Count,
    EpochMs,
    Int64,
    JobCpus,
    JobId,
    Lease,
    MemoryMb,
    Name,
    Requires,
    TaskName,
)
from gridd.protocol.retries import RetryCauses, RetryDelay

MAX_GANG = 1024  # members in one gang (submit --gang N)

# ---- what a job is and how an attempt ended ----------------------------------------------------------------


class TaskCall(Record, frozen=True, omit_defaults=True):
    """A Python task to call instead of a command. `name` is "module:qualname"; only workers that serve
    the module (`gridd worker --tasks MODULE`) lease it. `args` is the msgpack array of its arguments or,
    for a batch (`records` set), of its records; when too large for a frame it is in the blob `args_blob`."""

    name: TaskName
    args: bytes = b""
    args_blob: BlobId | None = None
    records: Annotated[int, msgspec.Meta(ge=0, lt=2**31)] | None = None  # a batch: results that must come back


class TaskError(Record, frozen=True):
    """What a task raised, as the worker saw it."""

    type: str  # qualified name of the exception class ("ValueError", "mypkg.errors.Bad")
    message: str
    traceback: str = ""


class JobSpec(Record, frozen=True, omit_defaults=True):
    """What a submitter asks to run. Defaults here are the contract's defaults."""

    argv: Annotated[list[str], msgspec.Meta(min_length=1)]
    queue: Name = "default"
    priority: Int64 = 0
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    env: dict[str, str] = msgspec.field(default_factory=dict)
    stdin: bytes | None = None
    task: TaskCall | None = None  # set: call this Python task (argv then only names it)
    bundle: BundleRef | None = None  # run inside this bundle; the broker pins "NAME" to "NAME@N" at submit
    # Resources: only a worker with this many cpus and MiB free, and every tag in `requires`, runs it.
    cpus: JobCpus = 1
    memory_mb: MemoryMb = 0
    requires: Requires = msgspec.field(default_factory=dict)
    # Cause-aware retries (gridd/protocol/retries.py): only failures of these causes are retried (empty:
    # any failure); the first retry waits retry_delay_s, each next one twice as long (None: the broker's).
    retry_on: RetryCauses = msgspec.field(default_factory=list)
    retry_delay_s: RetryDelay | None = None
    # Not started before this time (submit --at/--in): the job is `scheduled` until then. None: at once.
    start_at_ms: EpochMs | None = None
    schedule: Name | None = None  # set by the broker: the periodic schedule that submitted it (schedule add)
    # The wire checks the causes' shape; their numbers are checked where a spec comes in (submit, schedule
    # add: retries.causes_problem), not at each decode: a lease or listing decodes thousands of specs.
    # A gang (submit --gang N): N members started together on N distinct workers (gridd/broker/gangs.py).
    # 0: an ordinary job. Commands only; a Python task cannot be one.
    gang: Annotated[int, msgspec.Meta(ge=0, le=MAX_GANG)] = 0

    def features_used(self) -> list[str]:
        """The features (protocol/features.py) a broker must have announced to run this spec as asked."""
        found = [START_AT] if self.start_at_ms is not None else []
        if self.retry_on or self.retry_delay_s is not None:
            found.append(RETRY_ON)
        if self.gang:
            found.append(GANG)
        return found


class LeaseRef(Record, frozen=True):
    """A job and the fencing token of the lease under which it runs."""

    job_id: JobId
    lease: Lease


class LeasedJob(Record, frozen=True):
    """A job handed to a worker: run `spec` as attempt `attempt`, under `lease`, until `deadline_ms`."""

    job_id: JobId
    lease: Lease
    attempt: int
    deadline_ms: EpochMs
    spec: JobSpec


class JobResult(Record, frozen=True):
    """How one attempt ended on the worker. `exit_code` is shell style (128+N, 124, 126, 127)."""

    job_id: JobId
    lease: Lease
    exit_code: Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31)] | None
    outcome: str  # exited | signalled | timed_out | not_found | not_executable | error
    started_ms: EpochMs
    ended_ms: EpochMs
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    message: str = ""
    # Task jobs: the msgpack return value (in the blob `value_blob` when too large for a frame), or
    # what the task raised; `code` is the version of the task's module that ran.
    value: bytes = b""
    value_blob: BlobId | None = None
    error: TaskError | None = None
    code: Annotated[str, msgspec.Meta(max_length=256)] = ""
    bundle: Annotated[str, msgspec.Meta(max_length=128)] = ""  # "NAME@N" the attempt ran in ("" none)
    # Accounting (None: not measured; an older worker sends none). Wall time from spawn to reap; CPU and
    # max RSS from wait4 on the job's process, which include the children it waited for.
    wall_ms: Annotated[int, msgspec.Meta(ge=0, lt=2**53)] | None = None
    cpu_user_s: Annotated[float, msgspec.Meta(ge=0)] | None = None
    cpu_system_s: Annotated[float, msgspec.Meta(ge=0)] | None = None
    max_rss_kb: Annotated[int, msgspec.Meta(ge=0, lt=2**53)] | None = None
    output_bytes: Annotated[int, msgspec.Meta(ge=0, lt=2**53)] | None = None  # written, kept or not


class OutputChunk(Record, frozen=True):
    """Bytes a running attempt wrote to one stream, at `offset` from the start of that stream."""

    job_id: JobId
    lease: Lease
    stream: str  # stdout | stderr
    offset: Count
    data: bytes


class Outcome(Record, frozen=True):
    """The answer for one job of a batch request: code 0 is success, else an ErrorCode value."""

    job_id: str
    code: int
    message: str = ""
    state: str | None = None
    group: str | None = None  # set when the job was named through its group


# ---- what clients see ------------------------------------------------------------------------------------


class JobView(Record, frozen=True):
    """A job as clients see it (`show --json` is this, with `id`)."""

    id: JobId
    state: str
    queue: str
    priority: int
    argv: list[str]
    attempts: int
    max_attempts: int
    exit_code: int | None
    worker: str | None
    submitted_ms: EpochMs
    started_ms: EpochMs | None = None
    finished_ms: EpochMs | None = None
    timeout_s: float | None = None
    reason: str | None = None
    stdout_bytes: Count = 0
    stderr_bytes: Count = 0
    group: str | None = None
    after: list[str] = msgspec.field(default_factory=list)
    bundle: str | None = None  # "NAME@N": the bundle version every attempt of the job runs in
    cpus: int = 1
    memory_mb: int = 0
    requires: dict[str, str] = msgspec.field(default_factory=dict)
    task: str | None = None  # a task job: the task it calls ("module:qualname")
    # A queued job that no connected worker could run (none serves its queue or lane, has its tags, or
    # has enough cpus or memory): the closest reason, in one line. None otherwise. Set by `show` only.
    unmatched: str | None = None
    # Who submitted it: the name of the credential it was submitted with ("admin": the cluster token).
    owner: str | None = None
    retry_on: list[str] = msgspec.field(default_factory=list)  # empty: any failure is retried
    retry_delay_s: float | None = None  # None: the broker's retry delay
    # It failed the same way (exit status or signal) on 3 different workers: not retried further.
    poison: bool = False
    # Its start time (submit --at/--in; a release of the scheduled job moves it to then). None: none was set.
    start_at_ms: EpochMs | None = None
    schedule: str | None = None  # the periodic schedule that submitted it, if one did
    gang: int = 0  # its gang's size (submit --gang N); 0: an ordinary job


class AttemptView(Record, frozen=True):
    """One finished attempt of a job: who ran it and how it ended."""

    attempt: int
    worker: str | None
    lease: int
    started_ms: EpochMs | None
    ended_ms: EpochMs
    exit_code: int | None
    outcome: str
    code: str | None = None  # the version of the task code that ran it (task jobs)
    bundle: str | None = None  # "NAME@N": the bundle version it ran in, as its worker reported
    # Accounting, as its worker measured it (None: not measured: an expired lease, an older worker, and
    # CPU and memory of a Python task, which runs inside the worker's own process).
    wall_ms: int | None = None
    cpu_user_s: float | None = None  # the job's processes and the children they waited for (wait4)
    cpu_system_s: float | None = None
    max_rss_kb: int | None = None  # the largest resident set of any one of them, KiB
    output_bytes: int | None = None  # what it wrote to stdout and stderr, kept or not
    lent: bool | None = None  # its worker lends a desktop (--when-idle, --window, --idle-probe)


class WorkerView(Record, frozen=True):
    """A worker as clients see it (`workers --json`)."""

    name: str
    host: str
    slots: int
    running: int
    jobs: list[str]
    queues: list[str]
    tags: dict[str, str]
    connected: bool
    connected_ms: EpochMs
    last_seen_ms: EpochMs
    tasks: list[str] = msgspec.field(default_factory=list)  # the task modules it serves
    state: str = "available"  # see WORKER_STATES
    cpus: int | None = None  # None: it announced no limit (an older worker)
    memory_mb: int | None = None


class DependencyView(Record, frozen=True):
    """A job another one waits for (--after), and its state now."""

    id: str
    state: str


class WorkerFit(Record, frozen=True):
    """One connected worker and the first thing that keeps it from taking a job (None: nothing, it may)."""

    worker: str
    state: str
    blocker: str | None = None


class TaskOutcome(Record, frozen=True):
    """A task job's recorded result: its value (or blob) when it succeeded, what it raised when it failed."""

    job_id: str
    state: str
    exit_code: int | None = None
    reason: str | None = None
    value: bytes = b""
    value_blob: str | None = None
    error: TaskError | None = None


class ReportRow(Record, frozen=True):
    """One group's share. A job counts as finished in the group of its last attempt; `lent_*` is the part
    that ran on workers lending a desktop (--when-idle, --window, --idle-probe)."""

    group: str
    jobs: int  # finished (succeeded, failed or cancelled) after its last attempt here
    succeeded: int
    attempts: int
    cpu_hours: float  # user + system CPU of shell jobs (Python tasks: not measured)
    wall_hours: float
    lent_attempts: int = 0
    lent_cpu_hours: float = 0.0
    lent_wall_hours: float = 0.0


class TokenView(Record, frozen=True):
    """A role token as `gridd token list` shows it: never its secret, nor the secret's hash."""

    name: str
    role: str  # admin | submit | worker | read
    queues: list[str]  # the only queues it may use; empty: any
    created_ms: EpochMs
    last_used_ms: EpochMs | None = None  # kept to the minute (not written at every connection)
    expires_ms: EpochMs | None = None
    revoked_ms: EpochMs | None = None


# ---- bundles ---------------------------------------------------------------------------------------------------


class BundleFile(Record, frozen=True, omit_defaults=True):
    """One regular file of a bundle: its path relative to the bundle's root ("/" separated, checked by
    gridd.protocol.bundles), its content blob and size, and whether it is executable."""

    path: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    blob: BlobId
    size: Annotated[int, msgspec.Meta(ge=0, lt=2**53)]
    executable: bool = False


class BundleView(Record, frozen=True):
    """One version of a bundle: `digest` is the sha256 of its manifest (gridd.protocol.bundles)."""

    name: str
    version: int
    digest: str
    files: int
    bytes: int
    pushed_ms: EpochMs

"""Every message of the wire protocol, as tagged msgspec Structs, one union per direction.

Rules (schema evolution, see msgspec's docs): tags are stable forever; a new field gets a default and goes
last; no field ever changes type; `forbid_unknown_fields` is never set on a message, so an older peer skips
what it does not know. An incompatible change bumps PROTOCOL_VERSION. Every number that comes off the wire
is bounded here, so decoding is validation.

Job states and event kinds travel as plain strings so that new ones never break an old peer.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from gridd.protocol.states import JOB_STATES as JOB_STATES  # re-exported: older imports

RequestId = Annotated[int, msgspec.Meta(ge=0, lt=2**32)]
JobId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
EpochMs = Annotated[int, msgspec.Meta(ge=0, lt=2**53)]
# A lease's fencing token: random and unguessable (the broker draws 62 bits for each lease), never ordered.
Lease = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
# The secret of a credential (gridd/protocol/credentials.py): sent once, in Hello, inside TLS.
Secret = Annotated[str, msgspec.Meta(max_length=512)]
Count = Annotated[int, msgspec.Meta(ge=0, lt=2**53)]
BlobId = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]  # the sha256 of the content, in hex
TaskName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$", max_length=512)]
# A bundle's name never starts with a dot (it names a directory in workers' caches); a reference to it
# may pin a version: "NAME@3".
BundleName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")]
BundleRef = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}(@[1-9][0-9]{0,8})?$")]
MAX_BUNDLE_FILES = 50_000  # keeps a manifest (about 150 bytes a file) well under the frame limit
# Resources (see gridd/resources.py): memory in MiB; a worker's cpus and memory, None when it announced none.
JobCpus = Annotated[int, msgspec.Meta(ge=1, le=4096)]
MemoryMb = Annotated[int, msgspec.Meta(ge=0, le=2**40)]
WorkerCpus = Annotated[int, msgspec.Meta(ge=0, le=2**20)]
# A requirement KEY=VALUE matches a worker tag; ';' and a key's '=' are reserved (they join requirements
# into a job's lane, see gridd/broker/matching.py).
RequireKey = Annotated[str, msgspec.Meta(pattern=r"^[^;=\s]+$", max_length=64)]
RequireValue = Annotated[str, msgspec.Meta(pattern=r"^[^;]*$", max_length=255)]
Requires = Annotated[dict[RequireKey, RequireValue], msgspec.Meta(max_length=32)]
InstanceId = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]*$", max_length=64)]


# What a worker's machine is doing for the grid: "available" (no idle policy: it takes jobs), "idle" (its
# owner is away: it takes jobs), "owner-busy" and "outside-window" (taken back: it takes none), "suspended"
# (taken back, its jobs stopped until the owner leaves), "draining" (shutting down). Strings, like job states.
WORKER_STATES = ("available", "idle", "owner-busy", "outside-window", "suspended", "draining")
StateName = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="op"):
    """Base of every frame body; each subclass sets a stable tag."""


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """A value carried inside messages (not a frame of its own)."""


# ---- records -------------------------------------------------------------------------------------------


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


class TokenView(Record, frozen=True):
    """A role token as `gridd token list` shows it: never its secret, nor the secret's hash."""

    name: str
    role: str  # admin | submit | worker | read
    queues: list[str]  # the only queues it may use; empty: any
    created_ms: EpochMs
    last_used_ms: EpochMs | None = None  # kept to the minute (not written at every connection)
    expires_ms: EpochMs | None = None
    revoked_ms: EpochMs | None = None


class TaskOutcome(Record, frozen=True):
    """A task job's recorded result: its value (or blob) when it succeeded, what it raised when it failed."""

    job_id: str
    state: str
    exit_code: int | None = None
    reason: str | None = None
    value: bytes = b""
    value_blob: str | None = None
    error: TaskError | None = None


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


# ---- handshake ---------------------------------------------------------------------------------------------


class Hello(Message, frozen=True, tag="hello"):
    """First frame from any peer: who it is and the secret of the credential it speaks with. The broker
    answers Welcome, or an Error and the close. Sent only once the peer has verified the broker (inside
    TLS), so the broker never hands a stranger anything to test guesses of a secret against."""

    version: int
    role: str  # client | worker
    name: Name
    secret: Secret = ""


class BrokerCA(Message, frozen=True, tag="broker_ca"):
    """First frame from the broker on a TLS connection, before any peer speaks: its CA certificate (PEM).

    A peer whose credential names the CA's digest but has not stored that CA yet cannot make Python's ssl
    show it the unverified chain (3.11), so the broker hands it over here; the peer checks the digest and
    that the TLS certificate it was shown is issued by this CA before it sends its secret."""

    ca_pem: Annotated[str, msgspec.Meta(max_length=16384)]


class Welcome(Message, frozen=True, tag="welcome"):
    """Authentication succeeded; the broker's settings a peer needs."""

    broker_version: str
    lease_ttl_s: float
    heartbeat_s: float
    # A client connection that sends nothing for this long while no long poll of it is in flight is
    # closed; a peer keeps an idle connection open with Ping. 0 (an older broker): nothing is closed.
    idle_timeout_s: float = 0.0
    # The broker's limits on a job's spec (gridd/protocol/limits.py), so a client refuses early; 0: not said.
    max_command_bytes: Count = 0
    max_stdin_bytes: Count = 0


class Error(Message, frozen=True, tag="error"):
    """A refused request (rid set) or a connection-level error (rid None, then the broker closes)."""

    rid: RequestId | None
    code: int  # an ErrorCode value; a plain int so new codes never break old peers
    message: str


class Ping(Message, frozen=True, tag="ping"):
    """Keeps an idle connection open (see Welcome.idle_timeout_s); answered with Pong."""

    rid: RequestId


class Pong(Message, frozen=True, tag="pong"):
    rid: RequestId


# ---- client requests and their replies ---------------------------------------------------------------------


class SubmitJobs(Message, frozen=True, tag="job.submit"):
    """Jobs to run. `new_group` puts them in a new group (with `max_running` of them running at once);
    `group` adds them to an existing one (the later chunks of a large submission). Every job waits
    until each job (or group) named in `after` has succeeded."""

    rid: RequestId
    jobs: Annotated[list[JobSpec], msgspec.Meta(min_length=1)]
    after: list[JobId] = msgspec.field(default_factory=list)
    new_group: bool = False
    group: JobId | None = None
    max_running: Annotated[int, msgspec.Meta(ge=1, le=2**31)] | None = None


class JobsAccepted(Message, frozen=True, tag="job.accepted"):
    """Every job of the submit is durable; ids in the order submitted."""

    rid: RequestId
    job_ids: list[str]
    group: str | None = None


class ShowJob(Message, frozen=True, tag="job.show"):
    rid: RequestId
    job_id: JobId


class JobShown(Message, frozen=True, tag="job.shown"):
    rid: RequestId
    job: JobView
    attempts: list[AttemptView]


class ExplainJob(Message, frozen=True, tag="job.why"):
    """Why a job is not running (or where it runs, or how it ended): `gridd why`."""

    rid: RequestId
    job_id: JobId


class DependencyView(Record, frozen=True):
    """A job another one waits for (--after), and its state now."""

    id: str
    state: str


class WorkerFit(Record, frozen=True):
    """One connected worker and the first thing that keeps it from taking a job (None: nothing, it may)."""

    worker: str
    state: str
    blocker: str | None = None


class JobExplained(Message, frozen=True, tag="job.explained"):
    """`reason`: the one line that says why the job is where it is; `causes`: the job's own causes (held,
    dependencies, its group's --max-running, a retry delay); `workers`: each connected worker's first
    obstacle (a queued job only); `remedy`: what would make it run, in one line (None: nothing to do)."""

    rid: RequestId
    job: JobView
    attempts: list[AttemptView]
    reason: str
    causes: list[str] = msgspec.field(default_factory=list)
    workers: list[WorkerFit] = msgspec.field(default_factory=list)
    remedy: str | None = None
    dependencies: list[DependencyView] = msgspec.field(default_factory=list)
    not_before_ms: EpochMs | None = None  # a retried job is not leased before this time (its retry delay)


MAX_LIST_ROWS = 10_000  # a JobsListed carries at most this many jobs (page on with `before`)


class ListJobs(Message, frozen=True, tag="job.list"):
    """The newest jobs first, at most `limit` (0: no limit) and at most MAX_LIST_ROWS per reply."""

    rid: RequestId
    state: str | None = None
    queue: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=0, le=2**62)] = 1000
    before: JobId | None = None  # page: only jobs submitted before this one
    group: JobId | None = None


class JobsListed(Message, frozen=True, tag="job.listed"):
    """A page of jobs. `more`: the page was cut by its size (LIST_REPLY_BYTES), not by `limit`, so there
    may be more jobs older than its last one (an older broker never sets it: a short page ended it)."""

    rid: RequestId
    jobs: list[JobView]
    more: bool = False


class ReadOutput(Message, frozen=True, tag="job.output"):
    rid: RequestId
    job_id: JobId
    stream: str = "stdout"  # stdout | stderr


class OutputRead(Message, frozen=True, tag="job.output_read"):
    rid: RequestId
    data: bytes
    truncated: bool


class ControlJobs(Message, frozen=True, tag="job.control"):
    """cancel | retry | hold | release, for each job named."""

    rid: RequestId
    action: str
    job_ids: Annotated[list[JobId], msgspec.Meta(min_length=1)]


class JobsControlled(Message, frozen=True, tag="job.controlled"):
    rid: RequestId
    outcomes: list[Outcome]


class WaitJobs(Message, frozen=True, tag="job.wait"):
    """Answered when every named job has finished (a long poll). With `any`: as soon as at least one
    has, with the finished ones only (how a client iterates jobs as they complete)."""

    rid: RequestId
    job_ids: Annotated[list[JobId], msgspec.Meta(min_length=1)]
    any: bool = False


class JobsFinished(Message, frozen=True, tag="job.finished"):
    rid: RequestId
    jobs: list[JobView]


class ReadResults(Message, frozen=True, tag="job.results"):
    """The recorded results of task jobs (a reply stays under the frame limit: read on with the rest).
    With `wait_any`: a long poll, answered once at least one has finished, with the finished ones only."""

    rid: RequestId
    job_ids: Annotated[list[JobId], msgspec.Meta(min_length=1)]
    wait_any: bool = False


class ResultsRead(Message, frozen=True, tag="job.results_read"):
    """Results for the first len(results) of the ids asked for, in their order."""

    rid: RequestId
    results: list[TaskOutcome]


BLOB_CHUNK_BYTES = 4 * 1024 * 1024  # a blob travels in pieces of at most this size
MAX_BLOB_BYTES = 1024 * 1024 * 1024  # a task's arguments or result may not exceed this (1 GiB)


class PutBlob(Message, frozen=True, tag="blob.put"):
    """A piece of a content-addressed blob of `size` bytes, at `offset`. The broker keeps what arrives in
    order; once all is there and hashes to `blob`, the blob exists. Resumable: the reply says how much
    the broker has, and a blob it already holds is never sent again."""

    rid: RequestId
    blob: BlobId
    size: Annotated[int, msgspec.Meta(ge=0, le=MAX_BLOB_BYTES)]
    offset: Annotated[int, msgspec.Meta(ge=0, le=MAX_BLOB_BYTES)]
    data: Annotated[bytes, msgspec.Meta(max_length=BLOB_CHUNK_BYTES)]


class BlobStored(Message, frozen=True, tag="blob.stored"):
    """`have`: bytes the broker holds, from the start (== size: the blob is complete)."""

    rid: RequestId
    have: Count


class GetBlob(Message, frozen=True, tag="blob.get"):
    rid: RequestId
    blob: BlobId
    offset: Annotated[int, msgspec.Meta(ge=0, le=MAX_BLOB_BYTES)] = 0


class BlobRead(Message, frozen=True, tag="blob.read"):
    """Up to BLOB_CHUNK_BYTES of the blob from `offset`, and its whole size."""

    rid: RequestId
    size: Count
    data: bytes


class PushBundle(Message, frozen=True, tag="bundle.push"):
    """Make `files` the next version of bundle `name`. Refused while the broker lacks some of their
    blobs: the reply lists those (upload them with PutBlob, then push again), so that no version ever
    names content the broker does not hold. A manifest equal to the latest version's makes no new one."""

    rid: RequestId
    name: BundleName
    files: Annotated[list[BundleFile], msgspec.Meta(max_length=MAX_BUNDLE_FILES)]


class BundlePushed(Message, frozen=True, tag="bundle.pushed"):
    """`missing` empty: `version` holds the files (`created` False: it already did). Else nothing was
    made (version 0) and `missing` names the blobs to upload first."""

    rid: RequestId
    version: Count
    created: bool
    missing: list[BlobId] = msgspec.field(default_factory=list)
    digest: str = ""


class ListBundles(Message, frozen=True, tag="bundle.list"):
    """Every version of every bundle (or of bundle `name`), by name then version."""

    rid: RequestId
    name: BundleName | None = None


class BundlesListed(Message, frozen=True, tag="bundle.listed"):
    rid: RequestId
    bundles: list[BundleView]


class GetBundle(Message, frozen=True, tag="bundle.get"):
    """The manifest of "NAME@N" (or of NAME's latest version)."""

    rid: RequestId
    ref: BundleRef


class BundleGot(Message, frozen=True, tag="bundle.got"):
    rid: RequestId
    bundle: BundleView
    files: list[BundleFile]


class PurgeJobs(Message, frozen=True, tag="job.purge"):
    """Remove the finished jobs that finished more than `older_than_s` ago (None: the broker's --keep),
    with their attempts, output, results and the blobs only they refer to."""

    rid: RequestId
    older_than_s: Annotated[float, msgspec.Meta(ge=0, le=2**40)] | None = None


class JobsPurged(Message, frozen=True, tag="job.purged"):
    rid: RequestId
    purged: Count
    older_than_s: float = 0.0  # what it was run with


class ListWorkers(Message, frozen=True, tag="worker.list"):
    rid: RequestId


class WorkersListed(Message, frozen=True, tag="worker.listed"):
    rid: RequestId
    workers: list[WorkerView]


class GetStatus(Message, frozen=True, tag="status.get"):
    rid: RequestId


class StatusReported(Message, frozen=True, tag="status.reported"):
    rid: RequestId
    counts: dict[str, int]
    workers: int
    slots: int
    running: int


REPORT_BY = ("owner", "queue", "worker")


class GetReport(Message, frozen=True, tag="report.get"):
    """Accounting of the attempts that ended at or after `since_ms`, one row per owner, queue or worker
    (`by`). A submit token gets its own jobs only."""

    rid: RequestId
    since_ms: EpochMs = 0
    by: Annotated[str, msgspec.Meta(max_length=16)] = "owner"  # see REPORT_BY


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


class ReportReady(Message, frozen=True, tag="report.ready"):
    rid: RequestId
    by: str
    since_ms: EpochMs
    rows: list[ReportRow]


class Subscribe(Message, frozen=True, tag="events.subscribe"):
    """Follow the event stream; deltas arrive as Event frames after Subscribed."""

    rid: RequestId


class Subscribed(Message, frozen=True, tag="events.subscribed"):
    """The snapshot the following Event deltas apply to: jobs per queue and state, connected workers."""

    rid: RequestId
    queues: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    workers: list[WorkerView] = msgspec.field(default_factory=list)


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


class FollowOutput(Message, frozen=True, tag="job.output_follow"):
    """Receive what the job's running attempts write, as they write it (OutputChunks pushes)."""

    rid: RequestId
    job_id: JobId


class OutputFollowed(Message, frozen=True, tag="job.output_followed"):
    rid: RequestId


class OutputChunks(Message, frozen=True, tag="job.output_chunks"):
    """Broker push to a follower. Best effort: a follower completes from the recorded output."""

    chunks: list[OutputChunk]


class EventBatch(Message, frozen=True, tag="events"):
    """Several events, in order: how a subscription delivers them."""

    events: list[Event]


# ---- token administration (role admin) ---------------------------------------------------------------------

RoleName = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class CreateToken(Message, frozen=True, tag="token.create"):
    """Make a credential for `role`; `queues` limits it to those queues (submit: where it submits;
    worker: what it serves); `expires_s` after which it is refused (None: never)."""

    rid: RequestId
    name: Name
    role: RoleName
    queues: Annotated[list[Name], msgspec.Meta(max_length=1024)] = msgspec.field(default_factory=list)
    expires_s: Annotated[float, msgspec.Meta(gt=0, le=2**40)] | None = None


class TokenCreated(Message, frozen=True, tag="token.created"):
    """`credential`: the string to give the token's holder (GRIDD_TOKEN); shown this once, never again."""

    rid: RequestId
    credential: str
    token: TokenView


class ListTokens(Message, frozen=True, tag="token.list"):
    rid: RequestId


class TokensListed(Message, frozen=True, tag="token.listed"):
    rid: RequestId
    tokens: list[TokenView]


class RevokeToken(Message, frozen=True, tag="token.revoke"):
    """Refuse the token from now on and close its open connections."""

    rid: RequestId
    name: Name


class TokenRevoked(Message, frozen=True, tag="token.revoked"):
    rid: RequestId
    token: TokenView
    closed: Count = 0  # connections it had open, now closed


# ---- worker requests and their replies ------------------------------------------------------------------------


class RegisterWorker(Message, frozen=True, tag="worker.register"):
    """A worker announces itself and re-attaches the jobs it is still running."""

    rid: RequestId
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


class WorkerRegistered(Message, frozen=True, tag="worker.registered"):
    """`lost`: attached leases that are no longer current; the worker must stop those jobs."""

    rid: RequestId
    lost: list[LeaseRef]


class RequestJobs(Message, frozen=True, tag="lease.request"):
    """Long poll: answered as soon as at least one job is leased to this worker."""

    rid: RequestId
    max_jobs: Annotated[int, msgspec.Meta(ge=1, le=4096)]
    # The free budget: what the jobs leased for this request may claim in all (None: no limit). Each job
    # must also fit the worker's registered cpus and memory.
    cpus: WorkerCpus | None = None
    memory_mb: MemoryMb | None = None


class JobsLeased(Message, frozen=True, tag="lease.granted"):
    rid: RequestId
    jobs: list[LeasedJob]


class RenewLeases(Message, frozen=True, tag="lease.renew"):
    rid: RequestId
    leases: list[LeaseRef]


class LeasesRenewed(Message, frozen=True, tag="lease.renewed"):
    """`lost`: leases that are no longer current (cancelled, expired); the worker stops those jobs."""

    rid: RequestId
    lost: list[LeaseRef]
    deadline_ms: EpochMs


class CompleteJobs(Message, frozen=True, tag="job.complete"):
    rid: RequestId
    results: Annotated[list[JobResult], msgspec.Meta(min_length=1)]


class JobsCompleted(Message, frozen=True, tag="job.completed"):
    """One outcome per result: code 0 recorded, STALE_LEASE refused (the job's outcome was not changed)."""

    rid: RequestId
    outcomes: list[Outcome]


class ReturnLeases(Message, frozen=True, tag="lease.return"):
    """A draining worker hands jobs back unfinished; they are queued again without spending an attempt."""

    rid: RequestId
    leases: Annotated[list[LeaseRef], msgspec.Meta(min_length=1)]


class LeasesReturned(Message, frozen=True, tag="lease.returned"):
    rid: RequestId


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


PeerMessage = (
    Hello
    | SubmitJobs
    | ShowJob
    | ExplainJob
    | ListJobs
    | ReadOutput
    | ControlJobs
    | WaitJobs
    | ReadResults
    | PutBlob
    | GetBlob
    | PushBundle
    | ListBundles
    | GetBundle
    | ListWorkers
    | GetStatus
    | GetReport
    | PurgeJobs
    | Subscribe
    | FollowOutput
    | RegisterWorker
    | RequestJobs
    | RenewLeases
    | CompleteJobs
    | ReturnLeases
    | AppendOutput
    | ReportWorkerState
    | Ping
    | CreateToken
    | ListTokens
    | RevokeToken
)
"""Everything a peer (client or worker) may send to the broker."""

BrokerMessage = (
    BrokerCA
    | Welcome
    | Error
    | JobsAccepted
    | JobShown
    | JobExplained
    | JobsListed
    | OutputRead
    | JobsControlled
    | JobsFinished
    | ResultsRead
    | BlobStored
    | BlobRead
    | BundlePushed
    | BundlesListed
    | BundleGot
    | WorkersListed
    | StatusReported
    | ReportReady
    | JobsPurged
    | Subscribed
    | Event
    | EventBatch
    | OutputFollowed
    | OutputChunks
    | WorkerRegistered
    | JobsLeased
    | LeasesRenewed
    | JobsCompleted
    | LeasesReturned
    | RevokeLeases
    | Pong
    | TokenCreated
    | TokensListed
    | TokenRevoked
)
"""Everything the broker may send to a peer."""

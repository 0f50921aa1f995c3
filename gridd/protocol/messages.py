"""Every message of the wire protocol, one union per direction, and which reply answers which request.

The messages live in modules by what they hold (records.py, connection_messages.py, job_messages.py,
blob_messages.py, grid_messages.py, stream_messages.py, worker_messages.py; their bounded field types in
fields.py); this module gathers them, so `from gridd.protocol.messages import X` reaches every one.

Rules (schema evolution, see msgspec's docs): tags are stable forever; a new field gets a default and goes
last; no field ever changes type; `forbid_unknown_fields` is never set on a message, so an older peer skips
what it does not know. An incompatible change bumps PROTOCOL_VERSION. Every number that comes off the wire
is bounded (fields.py), so decoding is validation. A request names its reply in its class header
(base.py), and each reply is written just before the request it answers.

Job states and event kinds travel as plain strings so that new ones never break an old peer.
"""

from __future__ import annotations

from typing import get_args

from gridd.protocol.base import Message, Record, Reply, Request
from gridd.protocol.blob_messages import (
    BLOB_CHUNK_BYTES,
    MAX_BLOB_BYTES,
    BlobRead,
    BlobStored,
    BundleGot,
    BundlePushed,
    BundlesListed,
    GetBlob,
    GetBundle,
    ListBundles,
    PushBundle,
    PutBlob,
)
from gridd.protocol.connection_messages import BrokerCA, Error, Hello, Ping, Pong, Welcome
from gridd.protocol.fields import (
    MAX_BUNDLE_FILES,
    WORKER_STATES,
    BlobId,
    BundleName,
    BundleRef,
    Count,
    EpochMs,
    InstanceId,
    Int64,
    JobCpus,
    JobId,
    Lease,
    MemoryMb,
    Name,
    RequestId,
    RequireKey,
    Requires,
    RequireValue,
    RoleName,
    Secret,
    StateName,
    TaskName,
    WorkerCpus,
)
from gridd.protocol.grid_messages import (
    REPORT_BY,
    CreateToken,
    GetReport,
    GetStatus,
    ListTokens,
    ListWorkers,
    ReportReady,
    RevokeToken,
    StatusReported,
    TokenCreated,
    TokenRevoked,
    TokensListed,
    WorkersListed,
)
from gridd.protocol.job_messages import (
    MAX_LIST_ROWS,
    ControlJobs,
    ExplainJob,
    JobExplained,
    JobsAccepted,
    JobsControlled,
    JobsFinished,
    JobShown,
    JobsListed,
    JobsPurged,
    ListJobs,
    OutputRead,
    PurgeJobs,
    ReadOutput,
    ReadResults,
    ResultsRead,
    ShowJob,
    SubmitJobs,
    WaitJobs,
)
from gridd.protocol.records import (
    AttemptView,
    BundleFile,
    BundleView,
    DependencyView,
    JobResult,
    JobSpec,
    JobView,
    LeasedJob,
    LeaseRef,
    Outcome,
    OutputChunk,
    ReportRow,
    TaskCall,
    TaskError,
    TaskOutcome,
    TokenView,
    WorkerFit,
    WorkerView,
)
from gridd.protocol.schedule_messages import (
    SCHEDULE_ACTIONS,
    AddSchedule,
    ChangeSchedule,
    ListSchedules,
    ScheduleAdded,
    ScheduleChanged,
    ScheduleRun,
    ScheduleShown,
    SchedulesListed,
    ScheduleView,
    ShowSchedule,
)
from gridd.protocol.states import JOB_STATES
from gridd.protocol.stream_messages import (
    Event,
    EventBatch,
    FollowOutput,
    OutputChunks,
    OutputFollowed,
    Subscribe,
    Subscribed,
)
from gridd.protocol.worker_messages import (
    AppendOutput,
    CompleteJobs,
    JobsCompleted,
    JobsLeased,
    LeasesRenewed,
    LeasesReturned,
    RegisterWorker,
    RenewLeases,
    ReportWorkerState,
    RequestJobs,
    ReturnLeases,
    RevokeLeases,
    WorkerRegistered,
)

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
    | AddSchedule
    | ListSchedules
    | ShowSchedule
    | ChangeSchedule
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
    | ScheduleAdded
    | SchedulesListed
    | ScheduleShown
    | ScheduleChanged
)
"""Everything the broker may send to a peer."""

REPLIES: dict[type[Message], type[Reply]] = {
    kind: kind.answered_by for kind in get_args(PeerMessage) if issubclass(kind, Request)
}
"""Request type -> the one reply type that answers it (an Error with its rid may answer any request).
Requests not here (Hello, AppendOutput, ReportWorkerState) are not answered by a reply of their own."""

__all__ = [
    "BLOB_CHUNK_BYTES",
    "JOB_STATES",
    "MAX_BLOB_BYTES",
    "MAX_BUNDLE_FILES",
    "MAX_LIST_ROWS",
    "REPLIES",
    "REPORT_BY",
    "SCHEDULE_ACTIONS",
    "WORKER_STATES",
    "AddSchedule",
    "AppendOutput",
    "AttemptView",
    "BlobId",
    "BlobRead",
    "BlobStored",
    "BrokerCA",
    "BrokerMessage",
    "BundleFile",
    "BundleGot",
    "BundleName",
    "BundlePushed",
    "BundleRef",
    "BundleView",
    "BundlesListed",
    "ChangeSchedule",
    "CompleteJobs",
    "ControlJobs",
    "Count",
    "CreateToken",
    "DependencyView",
    "EpochMs",
    "Error",
    "Event",
    "EventBatch",
    "ExplainJob",
    "FollowOutput",
    "GetBlob",
    "GetBundle",
    "GetReport",
    "GetStatus",
    "Hello",
    "InstanceId",
    "Int64",
    "JobCpus",
    "JobExplained",
    "JobId",
    "JobResult",
    "JobShown",
    "JobSpec",
    "JobView",
    "JobsAccepted",
    "JobsCompleted",
    "JobsControlled",
    "JobsFinished",
    "JobsLeased",
    "JobsListed",
    "JobsPurged",
    "Lease",
    "LeaseRef",
    "LeasedJob",
    "LeasesRenewed",
    "LeasesReturned",
    "ListBundles",
    "ListJobs",
    "ListSchedules",
    "ListTokens",
    "ListWorkers",
    "MemoryMb",
    "Message",
    "Name",
    "Outcome",
    "OutputChunk",
    "OutputChunks",
    "OutputFollowed",
    "OutputRead",
    "PeerMessage",
    "Ping",
    "Pong",
    "PurgeJobs",
    "PushBundle",
    "PutBlob",
    "ReadOutput",
    "ReadResults",
    "Record",
    "RegisterWorker",
    "RenewLeases",
    "Reply",
    "ReportReady",
    "ReportRow",
    "ReportWorkerState",
    "Request",
    "RequestId",
    "RequestJobs",
    "RequireKey",
    "RequireValue",
    "Requires",
    "ResultsRead",
    "ReturnLeases",
    "RevokeLeases",
    "RevokeToken",
    "RoleName",
    "ScheduleAdded",
    "ScheduleChanged",
    "ScheduleRun",
    "ScheduleShown",
    "ScheduleView",
    "SchedulesListed",
    "Secret",
    "ShowJob",
    "ShowSchedule",
    "StateName",
    "StatusReported",
    "SubmitJobs",
    "Subscribe",
    "Subscribed",
    "TaskCall",
    "TaskError",
    "TaskName",
    "TaskOutcome",
    "TokenCreated",
    "TokenRevoked",
    "TokenView",
    "TokensListed",
    "WaitJobs",
    "Welcome",
    "WorkerCpus",
    "WorkerFit",
    "WorkerRegistered",
    "WorkerView",
    "WorkersListed",
]

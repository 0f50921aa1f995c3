"""Hypothesis strategies for every wire message, mirroring the msgspec Meta bounds in
gridd/protocol/messages.py: a value these strategies produce is one a peer may legally send."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from gridd.protocol import messages as m

# ---- scalars, with the bounds of messages.py ---------------------------------------------------------------

rids = st.integers(0, 2**32 - 1)
leases = st.integers(0, 2**63 - 1)
epoch_ms = st.integers(0, 2**53 - 1)
counts = st.integers(0, 2**53 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
# Unbounded `int` fields still have to fit msgpack; they are sent by the broker, not validated on decode.
plain_ints = int64
small_ints = st.integers(-(2**31), 2**31 - 1)
texts = st.text(max_size=40)
names = st.text(min_size=1, max_size=255)
short_names = st.text(min_size=1, max_size=20)
job_ids = st.text(min_size=1, max_size=64)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
positive_floats = st.floats(min_value=0.0, exclude_min=True, allow_nan=False)
str_dicts = st.dictionaries(texts, texts, max_size=4)
states = st.sampled_from(["queued", "running", "succeeded", "failed", "cancelled", "held"]) | texts

# ---- records -------------------------------------------------------------------------------------------------

blob_ids = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
task_names = st.from_regex(r"[a-z_][a-z0-9_.]{0,20}:[a-z_][a-z0-9_]{0,20}", fullmatch=True)
task_calls = st.builds(
    m.TaskCall,
    name=task_names,
    args=st.binary(max_size=64),
    args_blob=st.none() | blob_ids,
    records=st.none() | st.integers(0, 2**31 - 1),
)
task_errors = st.builds(m.TaskError, type=texts, message=texts, traceback=texts)
job_specs = st.builds(
    m.JobSpec,
    argv=st.lists(texts, min_size=1, max_size=5),
    queue=names,
    priority=int64,
    max_attempts=st.integers(1, 1000),
    timeout_s=st.none() | positive_floats,
    env=str_dicts,
    stdin=st.none() | st.binary(max_size=64),
    task=st.none() | task_calls,
    bundle=st.none() | st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}(@[1-9][0-9]{0,8})?", fullmatch=True),
    cpus=st.integers(1, 4096),
    memory_mb=st.integers(0, 2**40),
    requires=st.dictionaries(
        st.from_regex(r"[^;=\s]{1,64}", fullmatch=True), st.from_regex(r"[^;]{0,20}", fullmatch=True), max_size=3
    ),
    schedule=st.none() | names,
)
lease_refs = st.builds(m.LeaseRef, job_id=job_ids, lease=leases)
job_views = st.builds(
    m.JobView,
    id=job_ids,
    state=states,
    queue=texts,
    priority=plain_ints,
    argv=st.lists(texts, max_size=4),
    attempts=plain_ints,
    max_attempts=plain_ints,
    exit_code=st.none() | plain_ints,
    worker=st.none() | texts,
    submitted_ms=epoch_ms,
    started_ms=st.none() | epoch_ms,
    finished_ms=st.none() | epoch_ms,
    timeout_s=st.none() | finite_floats,
    reason=st.none() | texts,
    stdout_bytes=counts,
    stderr_bytes=counts,
    group=st.none() | job_ids,
    after=st.lists(job_ids, max_size=3),
    bundle=st.none() | texts,
    cpus=plain_ints,
    memory_mb=plain_ints,
    requires=str_dicts,
    task=st.none() | texts,
    unmatched=st.none() | texts,
    owner=st.none() | texts,
    schedule=st.none() | texts,
)
attempt_views = st.builds(
    m.AttemptView,
    attempt=plain_ints,
    worker=st.none() | texts,
    lease=plain_ints,
    started_ms=st.none() | epoch_ms,
    ended_ms=epoch_ms,
    exit_code=st.none() | plain_ints,
    outcome=texts,
    code=st.none() | texts,
    bundle=st.none() | texts,
    wall_ms=st.none() | counts,
    cpu_user_s=st.none() | finite_floats,
    cpu_system_s=st.none() | finite_floats,
    max_rss_kb=st.none() | counts,
    output_bytes=st.none() | counts,
    lent=st.none() | st.booleans(),
)
worker_views = st.builds(
    m.WorkerView,
    name=texts,
    host=texts,
    slots=plain_ints,
    running=plain_ints,
    jobs=st.lists(texts, max_size=3),
    queues=st.lists(texts, max_size=3),
    tags=str_dicts,
    connected=st.booleans(),
    connected_ms=epoch_ms,
    last_seen_ms=epoch_ms,
    tasks=st.lists(texts, max_size=3),
    state=texts,
    cpus=st.none() | plain_ints,
    memory_mb=st.none() | plain_ints,
)
leased_jobs = st.builds(
    m.LeasedJob, job_id=job_ids, lease=leases, attempt=plain_ints, deadline_ms=epoch_ms, spec=job_specs
)
job_results = st.builds(
    m.JobResult,
    job_id=job_ids,
    lease=leases,
    exit_code=st.none() | st.integers(-(2**31), 2**31),
    outcome=st.sampled_from(["exited", "signalled", "timed_out", "not_found", "not_executable", "error"]) | texts,
    started_ms=epoch_ms,
    ended_ms=epoch_ms,
    stdout=st.binary(max_size=64),
    stderr=st.binary(max_size=64),
    stdout_truncated=st.booleans(),
    stderr_truncated=st.booleans(),
    message=texts,
    value=st.binary(max_size=64),
    value_blob=st.none() | blob_ids,
    error=st.none() | task_errors,
    code=st.text(max_size=40),
    bundle=st.text(max_size=40),
    wall_ms=st.none() | counts,
    cpu_user_s=st.none() | st.floats(0, 1e9),
    cpu_system_s=st.none() | st.floats(0, 1e9),
    max_rss_kb=st.none() | counts,
    output_bytes=st.none() | counts,
)
task_outcomes = st.builds(
    m.TaskOutcome,
    job_id=texts,
    state=states,
    exit_code=st.none() | plain_ints,
    reason=st.none() | texts,
    value=st.binary(max_size=64),
    value_blob=st.none() | texts,
    error=st.none() | task_errors,
)
outcomes = st.builds(
    m.Outcome, job_id=texts, code=plain_ints, message=texts, state=st.none() | states, group=st.none() | texts
)

# ---- messages a peer sends -----------------------------------------------------------------------------------

hellos = st.builds(
    m.Hello, version=plain_ints, role=st.sampled_from(["client", "worker"]) | texts, name=names, secret=texts
)
submit_jobs = st.builds(
    m.SubmitJobs,
    rid=rids,
    jobs=st.lists(job_specs, min_size=1, max_size=4),
    after=st.lists(job_ids, max_size=3),
    new_group=st.booleans(),
    group=st.none() | job_ids,
    max_running=st.none() | st.integers(1, 2**31),
    key=st.none() | st.from_regex(r"[!-~]{1,200}", fullmatch=True),
    key_ttl_s=st.none() | st.floats(60, 365 * 86400),
    key_part=st.integers(0, 2**31 - 1),
)
show_jobs = st.builds(m.ShowJob, rid=rids, job_id=job_ids)
list_jobs = st.builds(
    m.ListJobs,
    rid=rids,
    state=st.none() | states,
    queue=st.none() | texts,
    limit=st.integers(0, 2**62),
    before=st.none() | job_ids,
    group=st.none() | job_ids,
)
read_outputs = st.builds(m.ReadOutput, rid=rids, job_id=job_ids, stream=st.sampled_from(["stdout", "stderr"]))
control_jobs = st.builds(
    m.ControlJobs,
    rid=rids,
    action=st.sampled_from(["cancel", "retry", "hold", "release"]) | texts,
    job_ids=st.lists(job_ids, min_size=1, max_size=4),
)
wait_jobs = st.builds(m.WaitJobs, rid=rids, job_ids=st.lists(job_ids, min_size=1, max_size=4), any=st.booleans())
read_results = st.builds(
    m.ReadResults, rid=rids, job_ids=st.lists(job_ids, min_size=1, max_size=4), wait_any=st.booleans()
)
blob_offsets = st.integers(0, m.MAX_BLOB_BYTES)
put_blobs = st.builds(
    m.PutBlob, rid=rids, blob=blob_ids, size=blob_offsets, offset=blob_offsets, data=st.binary(max_size=64)
)
get_blobs = st.builds(m.GetBlob, rid=rids, blob=blob_ids, offset=blob_offsets)
bundle_names = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}", fullmatch=True)
bundle_files = st.builds(
    m.BundleFile,
    path=st.text(min_size=1, max_size=40),
    blob=blob_ids,
    size=st.integers(0, 2**53 - 1),
    executable=st.booleans(),
)
bundle_views = st.builds(
    m.BundleView, name=texts, version=plain_ints, digest=texts, files=plain_ints, bytes=plain_ints, pushed_ms=epoch_ms
)
push_bundles = st.builds(m.PushBundle, rid=rids, name=bundle_names, files=st.lists(bundle_files, max_size=3))
list_bundles = st.builds(m.ListBundles, rid=rids, name=st.none() | bundle_names)
get_bundles = st.builds(
    m.GetBundle, rid=rids, ref=st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}(@[1-9][0-9]{0,8})?", fullmatch=True)
)
bundles_pushed = st.builds(
    m.BundlePushed,
    rid=rids,
    version=counts,
    created=st.booleans(),
    missing=st.lists(blob_ids, max_size=3),
    digest=texts,
)
bundles_listed = st.builds(m.BundlesListed, rid=rids, bundles=st.lists(bundle_views, max_size=3))
bundles_got = st.builds(m.BundleGot, rid=rids, bundle=bundle_views, files=st.lists(bundle_files, max_size=3))
list_workers = st.builds(m.ListWorkers, rid=rids)
get_status = st.builds(m.GetStatus, rid=rids)
get_reports = st.builds(m.GetReport, rid=rids, since_ms=epoch_ms, by=st.sampled_from(m.REPORT_BY))
report_rows = st.builds(
    m.ReportRow,
    group=texts,
    jobs=counts,
    succeeded=counts,
    attempts=counts,
    cpu_hours=finite_floats,
    wall_hours=finite_floats,
    lent_attempts=counts,
    lent_cpu_hours=finite_floats,
    lent_wall_hours=finite_floats,
)
reports_ready = st.builds(m.ReportReady, rid=rids, by=texts, since_ms=epoch_ms, rows=st.lists(report_rows, max_size=3))
purge_jobs = st.builds(m.PurgeJobs, rid=rids, older_than_s=st.none() | st.floats(0, 2**40))
subscribes = st.builds(m.Subscribe, rid=rids)
register_workers = st.builds(
    m.RegisterWorker,
    rid=rids,
    host=names,
    slots=st.integers(1, 4096),
    queues=st.lists(names, min_size=1, max_size=3),
    tags=str_dicts,
    running=st.lists(lease_refs, max_size=3),
    restarted=st.booleans(),
    tasks=st.lists(names, max_size=3),
    state=st.text(min_size=1, max_size=32),
    cpus=st.none() | st.integers(0, 2**20),
    memory_mb=st.none() | st.integers(0, 2**40),
    instance=st.text("0123456789abcdef", max_size=64),
)
report_worker_states = st.builds(m.ReportWorkerState, state=st.text(min_size=1, max_size=32), accepting=st.booleans())
request_jobs = st.builds(
    m.RequestJobs,
    rid=rids,
    max_jobs=st.integers(1, 4096),
    cpus=st.none() | st.integers(0, 2**20),
    memory_mb=st.none() | st.integers(0, 2**40),
)
renew_leases = st.builds(m.RenewLeases, rid=rids, leases=st.lists(lease_refs, max_size=4))
complete_jobs = st.builds(m.CompleteJobs, rid=rids, results=st.lists(job_results, min_size=1, max_size=3))
return_leases = st.builds(m.ReturnLeases, rid=rids, leases=st.lists(lease_refs, min_size=1, max_size=3))

# ---- role tokens ---------------------------------------------------------------------------------------------

token_views = st.builds(
    m.TokenView,
    name=texts,
    role=texts,
    queues=st.lists(texts, max_size=3),
    created_ms=epoch_ms,
    last_used_ms=st.none() | epoch_ms,
    expires_ms=st.none() | epoch_ms,
    revoked_ms=st.none() | epoch_ms,
)
create_tokens = st.builds(
    m.CreateToken,
    rid=rids,
    name=names,
    role=st.text(min_size=1, max_size=32),
    queues=st.lists(names, max_size=3),
    expires_s=st.none() | st.floats(0, 2**40, exclude_min=True),
)
list_tokens = st.builds(m.ListTokens, rid=rids)
revoke_tokens = st.builds(m.RevokeToken, rid=rids, name=names)
tokens_created = st.builds(m.TokenCreated, rid=rids, credential=texts, token=token_views)
tokens_listed = st.builds(m.TokensListed, rid=rids, tokens=st.lists(token_views, max_size=3))
tokens_revoked = st.builds(m.TokenRevoked, rid=rids, token=token_views, closed=counts)

# ---- periodic schedules ----------------------------------------------------------------------------------------

schedule_names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", fullmatch=True)
schedule_views = st.builds(
    m.ScheduleView,
    name=texts,
    cron=texts,
    tz=texts,
    catch_up=texts,
    paused=st.booleans(),
    next_slot_ms=st.none() | epoch_ms,
    last_fired_ms=st.none() | epoch_ms,
    owner=texts,
    created_ms=epoch_ms,
    argv=st.lists(texts, max_size=3),
    queue=texts,
    task=st.none() | texts,
)
schedule_runs = st.builds(m.ScheduleRun, slot_ms=epoch_ms, job_id=texts, state=st.none() | texts)
add_schedules = st.builds(
    m.AddSchedule,
    rid=rids,
    name=schedule_names,
    cron=st.text(min_size=1, max_size=256),
    spec=job_specs,
    tz=st.text(min_size=1, max_size=64),
    catch_up=st.sampled_from(["none", "last", "all"]),
)
list_schedules = st.builds(m.ListSchedules, rid=rids)
show_schedules = st.builds(m.ShowSchedule, rid=rids, name=names)
change_schedules = st.builds(m.ChangeSchedule, rid=rids, name=names, action=st.sampled_from(m.SCHEDULE_ACTIONS))
schedules_added = st.builds(m.ScheduleAdded, rid=rids, schedule=schedule_views)
schedules_listed = st.builds(m.SchedulesListed, rid=rids, schedules=st.lists(schedule_views, max_size=3))
schedules_shown = st.builds(
    m.ScheduleShown, rid=rids, schedule=schedule_views, runs=st.lists(schedule_runs, max_size=3)
)
schedules_changed = st.builds(m.ScheduleChanged, rid=rids, schedule=schedule_views)

peer_messages: st.SearchStrategy[Any] = st.one_of(
    hellos,
    create_tokens,
    list_tokens,
    revoke_tokens,
    submit_jobs,
    show_jobs,
    list_jobs,
    read_outputs,
    control_jobs,
    wait_jobs,
    read_results,
    put_blobs,
    get_blobs,
    push_bundles,
    list_bundles,
    get_bundles,
    list_workers,
    get_status,
    get_reports,
    purge_jobs,
    subscribes,
    register_workers,
    request_jobs,
    renew_leases,
    complete_jobs,
    return_leases,
    report_worker_states,
    add_schedules,
    list_schedules,
    show_schedules,
    change_schedules,
)

# ---- messages the broker sends -----------------------------------------------------------------------------------

welcomes = st.builds(
    m.Welcome,
    broker_version=texts,
    lease_ttl_s=finite_floats,
    heartbeat_s=finite_floats,
    idle_timeout_s=finite_floats,
    max_command_bytes=counts,
    max_stdin_bytes=counts,
    features=st.lists(texts, max_size=4),
)
errors = st.builds(m.Error, rid=st.none() | rids, code=plain_ints, message=texts)
jobs_accepted = st.builds(m.JobsAccepted, rid=rids, job_ids=st.lists(texts, max_size=4), group=st.none() | texts)
jobs_shown = st.builds(m.JobShown, rid=rids, job=job_views, attempts=st.lists(attempt_views, max_size=3))
jobs_explained = st.builds(
    m.JobExplained,
    rid=rids,
    job=job_views,
    attempts=st.lists(attempt_views, max_size=3),
    reason=texts,
    causes=st.lists(texts, max_size=3),
    workers=st.lists(st.builds(m.WorkerFit, worker=texts, state=texts, blocker=st.none() | texts), max_size=3),
    remedy=st.none() | texts,
    dependencies=st.lists(st.builds(m.DependencyView, id=texts, state=texts), max_size=3),
    not_before_ms=st.none() | epoch_ms,
)
jobs_listed = st.builds(m.JobsListed, rid=rids, jobs=st.lists(job_views, max_size=3), more=st.booleans())
jobs_purged = st.builds(m.JobsPurged, rid=rids, purged=counts, older_than_s=finite_floats)
outputs_read = st.builds(m.OutputRead, rid=rids, data=st.binary(max_size=64), truncated=st.booleans())
jobs_controlled = st.builds(m.JobsControlled, rid=rids, outcomes=st.lists(outcomes, max_size=3))
jobs_finished = st.builds(m.JobsFinished, rid=rids, jobs=st.lists(job_views, max_size=3))
results_read = st.builds(m.ResultsRead, rid=rids, results=st.lists(task_outcomes, max_size=3))
blobs_stored = st.builds(m.BlobStored, rid=rids, have=counts)
blobs_read = st.builds(m.BlobRead, rid=rids, size=counts, data=st.binary(max_size=64))
workers_listed = st.builds(m.WorkersListed, rid=rids, workers=st.lists(worker_views, max_size=3))
statuses = st.builds(
    m.StatusReported,
    rid=rids,
    counts=st.dictionaries(texts, plain_ints, max_size=6),
    workers=plain_ints,
    slots=plain_ints,
    running=plain_ints,
)
subscribeds = st.builds(
    m.Subscribed,
    rid=rids,
    queues=st.dictionaries(texts, st.dictionaries(texts, plain_ints, max_size=3), max_size=3),
    workers=st.lists(worker_views, max_size=2),
)
events = st.builds(
    m.Event,
    kind=st.sampled_from(["job.submitted", "job.started", "job.succeeded", "worker.joined"]) | texts,
    ts_ms=epoch_ms,
    job_id=st.none() | texts,
    worker=st.none() | texts,
    queue=st.none() | texts,
    state=st.none() | states,
    attempt=st.none() | plain_ints,
    exit_code=st.none() | plain_ints,
    message=st.none() | texts,
    previous=st.none() | states,
)
event_batches = st.builds(m.EventBatch, events=st.lists(events, max_size=3))
output_chunks = st.builds(
    m.OutputChunk,
    job_id=job_ids,
    lease=leases,
    stream=st.sampled_from(["stdout", "stderr"]),
    offset=counts,
    data=st.binary(max_size=32),
)
follow_outputs = st.builds(m.FollowOutput, rid=rids, job_id=job_ids)
outputs_followed = st.builds(m.OutputFollowed, rid=rids)
output_chunk_pushes = st.builds(m.OutputChunks, chunks=st.lists(output_chunks, max_size=3))
append_outputs = st.builds(m.AppendOutput, chunks=st.lists(output_chunks, max_size=3))
workers_registered = st.builds(m.WorkerRegistered, rid=rids, lost=st.lists(lease_refs, max_size=3))
jobs_leased = st.builds(m.JobsLeased, rid=rids, jobs=st.lists(leased_jobs, max_size=3))
leases_renewed = st.builds(m.LeasesRenewed, rid=rids, lost=st.lists(lease_refs, max_size=3), deadline_ms=epoch_ms)
jobs_completed = st.builds(m.JobsCompleted, rid=rids, outcomes=st.lists(outcomes, max_size=3))
leases_returned = st.builds(m.LeasesReturned, rid=rids)
revoke_leases = st.builds(m.RevokeLeases, leases=st.lists(lease_refs, max_size=3))

broker_messages: st.SearchStrategy[Any] = st.one_of(
    welcomes,
    tokens_created,
    tokens_listed,
    tokens_revoked,
    errors,
    jobs_accepted,
    jobs_shown,
    jobs_listed,
    outputs_read,
    jobs_controlled,
    jobs_finished,
    results_read,
    blobs_stored,
    blobs_read,
    bundles_pushed,
    bundles_listed,
    bundles_got,
    workers_listed,
    statuses,
    reports_ready,
    jobs_purged,
    subscribeds,
    events,
    workers_registered,
    jobs_leased,
    leases_renewed,
    jobs_completed,
    leases_returned,
    revoke_leases,
    schedules_added,
    schedules_listed,
    schedules_shown,
    schedules_changed,
)

# Every message class and the strategy that builds it, so a test can check no class was forgotten.
BY_CLASS: dict[type, st.SearchStrategy[Any]] = {
    m.Hello: hellos,
    m.SubmitJobs: submit_jobs,
    m.ShowJob: show_jobs,
    m.ListJobs: list_jobs,
    m.ReadOutput: read_outputs,
    m.ControlJobs: control_jobs,
    m.WaitJobs: wait_jobs,
    m.ReadResults: read_results,
    m.PutBlob: put_blobs,
    m.GetBlob: get_blobs,
    m.PushBundle: push_bundles,
    m.ListBundles: list_bundles,
    m.GetBundle: get_bundles,
    m.BundlePushed: bundles_pushed,
    m.BundlesListed: bundles_listed,
    m.BundleGot: bundles_got,
    m.ListWorkers: list_workers,
    m.GetStatus: get_status,
    m.PurgeJobs: purge_jobs,
    m.Subscribe: subscribes,
    m.RegisterWorker: register_workers,
    m.RequestJobs: request_jobs,
    m.RenewLeases: renew_leases,
    m.CompleteJobs: complete_jobs,
    m.ReturnLeases: return_leases,
    m.FollowOutput: follow_outputs,
    m.AppendOutput: append_outputs,
    m.ReportWorkerState: report_worker_states,
    m.Ping: st.builds(m.Ping, rid=rids),
    m.BrokerCA: st.builds(m.BrokerCA, ca_pem=st.text(max_size=200)),
    m.Welcome: welcomes,
    m.Error: errors,
    m.JobsAccepted: jobs_accepted,
    m.JobShown: jobs_shown,
    m.JobExplained: jobs_explained,
    m.ExplainJob: st.builds(m.ExplainJob, rid=rids, job_id=job_ids),
    m.JobsListed: jobs_listed,
    m.OutputRead: outputs_read,
    m.JobsControlled: jobs_controlled,
    m.JobsFinished: jobs_finished,
    m.ResultsRead: results_read,
    m.BlobStored: blobs_stored,
    m.BlobRead: blobs_read,
    m.WorkersListed: workers_listed,
    m.StatusReported: statuses,
    m.GetReport: get_reports,
    m.ReportReady: reports_ready,
    m.JobsPurged: jobs_purged,
    m.Subscribed: subscribeds,
    m.Event: events,
    m.EventBatch: event_batches,
    m.OutputFollowed: outputs_followed,
    m.OutputChunks: output_chunk_pushes,
    m.WorkerRegistered: workers_registered,
    m.JobsLeased: jobs_leased,
    m.LeasesRenewed: leases_renewed,
    m.JobsCompleted: jobs_completed,
    m.LeasesReturned: leases_returned,
    m.RevokeLeases: revoke_leases,
    m.Pong: st.builds(m.Pong, rid=rids),
    m.CreateToken: create_tokens,
    m.ListTokens: list_tokens,
    m.RevokeToken: revoke_tokens,
    m.TokenCreated: tokens_created,
    m.TokensListed: tokens_listed,
    m.TokenRevoked: tokens_revoked,
    m.AddSchedule: add_schedules,
    m.ListSchedules: list_schedules,
    m.ShowSchedule: show_schedules,
    m.ChangeSchedule: change_schedules,
    m.ScheduleAdded: schedules_added,
    m.SchedulesListed: schedules_listed,
    m.ScheduleShown: schedules_shown,
    m.ScheduleChanged: schedules_changed,
}

# msgpack-encodable values of any shape, for bodies that are valid msgpack but not valid messages.
msgpack_values = st.recursive(
    st.none() | st.booleans() | int64 | finite_floats | texts | st.binary(max_size=16),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)

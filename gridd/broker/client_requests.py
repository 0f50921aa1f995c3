"""The answers to what a client asks on one connection: jobs, blobs and bundles, the grid, tokens.

Each method takes one request and returns the reply its header names (`SubmitJobs` -> `JobsAccepted`),
or raises the typed refusal the session sends back for its rid. The role was checked before any of this
runs (authorization.check); what the rule table cannot check is checked here, for the principal the
connection authenticated as: a submit token acts on its own jobs only, a read token sees jobs without
their arguments, a worker token fetches only the inputs of the jobs leased to it now.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from gridd.broker import authorization
from gridd.broker.core import Broker
from gridd.broker.finishes import StandingWatch
from gridd.broker.principals import Principal
from gridd.broker.submit_keys import submit_key
from gridd.protocol.errors import BadFrame, InvalidRequest
from gridd.protocol.messages import (
    MAX_LIST_ROWS,
    REPORT_BY,
    AddSchedule,
    BlobRead,
    BlobStored,
    BundleGot,
    BundlePushed,
    BundlesListed,
    ChangeSchedule,
    ControlJobs,
    CreateToken,
    ExplainJob,
    GetBlob,
    GetBundle,
    GetReport,
    GetStatus,
    JobExplained,
    JobsAccepted,
    JobsControlled,
    JobsFinished,
    JobShown,
    JobsListed,
    JobsPurged,
    ListBundles,
    ListJobs,
    ListSchedules,
    ListTokens,
    ListWorkers,
    OutputRead,
    PurgeJobs,
    PushBundle,
    PutBlob,
    ReadOutput,
    ReadResults,
    ReportReady,
    ResultsRead,
    RevokeToken,
    ScheduleAdded,
    ScheduleChanged,
    ScheduleShown,
    SchedulesListed,
    ScheduleView,
    ShowJob,
    ShowSchedule,
    StatusReported,
    SubmitJobs,
    TokenCreated,
    TokenRevoked,
    TokensListed,
    WaitJobs,
    WorkersListed,
)
from gridd.protocol.states import JobState

RESULTS_PER_REPLY_BYTES = 8 * 1024 * 1024  # a ResultsRead stays well under the frame limit


class ClientRequests:
    """One connection's answers to client requests, for the principal `who`. `leased` names the jobs
    leased to this connection's worker now (empty when it is not one)."""

    def __init__(self, broker: Broker, who: Principal, leased: Callable[[], frozenset[str]]) -> None:
        self._broker = broker
        self._who = who
        self._leased = leased
        # A worker token's fetchable inputs, for the set of jobs it held when they were read.
        self._inputs: tuple[frozenset[str], set[str], set[str]] | None = None
        self._standing = StandingWatch(broker.watch)  # what this connection's result long polls ask about

    def close(self) -> None:
        """The connection ended: nothing of it is watched any more."""
        self._standing.close()

    # ---- jobs -------------------------------------------------------------------------------------------------

    async def submit(self, m: SubmitJobs) -> JobsAccepted:
        who = self._who
        authorization.check_queues(who, m.jobs)
        await self.check_owned(m.after, "wait for")  # --after: depends on its own jobs only
        await self.check_owned([m.group] if m.group else [], "add jobs to")
        ids, group = await self._broker.submit(
            m.jobs,
            after=m.after,
            new_group=m.new_group,
            group=m.group,
            max_running=m.max_running,
            owner=who.name,
            key=submit_key(m),  # a key is its owner's: one credential cannot find or probe another's
        )
        return JobsAccepted(rid=m.rid, job_ids=ids, group=group)

    async def show(self, m: ShowJob) -> JobShown:
        job, attempts = await self._broker.show(m.job_id)
        owner = authorization.owner_filter(self._who)
        if owner is not None and job.owner != owner:
            raise authorization.refusal(self._who, f"show job {m.job_id}", f"it belongs to {job.owner!r}")
        return JobShown(rid=m.rid, job=authorization.visible(self._who, job), attempts=attempts)

    async def explain(self, m: ExplainJob) -> JobExplained:
        explained = await self._broker.explain(m.job_id)
        owner = authorization.owner_filter(self._who)
        if owner is not None and explained.job.owner != owner:
            raise authorization.refusal(self._who, f"explain job {m.job_id}", f"it belongs to {explained.job.owner!r}")
        return msgspec.structs.replace(explained, rid=m.rid, job=authorization.visible(self._who, explained.job))

    async def list_jobs(self, m: ListJobs) -> JobsListed:
        rows = min(m.limit or MAX_LIST_ROWS, MAX_LIST_ROWS)  # and LIST_REPLY_BYTES: far below the frame limit
        owner = authorization.owner_filter(self._who)  # a submit token lists its own jobs only
        jobs, more = await self._broker.store.list_jobs(m.state, m.queue, rows, m.before, m.group, owner)
        return JobsListed(rid=m.rid, jobs=[authorization.visible(self._who, j) for j in jobs], more=more)

    async def read_output(self, m: ReadOutput) -> OutputRead:
        if m.stream not in ("stdout", "stderr"):
            raise BadFrame(f"unknown output stream {m.stream!r}")
        await self.check_owned([m.job_id], "read the output of")
        data, truncated = await self._broker.store.read_output(m.job_id, m.stream)
        return OutputRead(rid=m.rid, data=data, truncated=truncated)

    async def control(self, m: ControlJobs) -> JobsControlled:
        await self.check_owned(m.job_ids, m.action)
        return JobsControlled(rid=m.rid, outcomes=await self._broker.control(m.action, m.job_ids))

    async def wait(self, m: WaitJobs) -> JobsFinished:
        await self.check_owned(m.job_ids, "wait for")
        jobs = await self._broker.wait(m.job_ids, any_=m.any)
        return JobsFinished(rid=m.rid, jobs=[authorization.visible(self._who, j) for j in jobs])

    async def results(self, m: ReadResults) -> ResultsRead:
        await self.check_owned(m.job_ids, "read the results of")
        results = await self._broker.results(
            m.job_ids, RESULTS_PER_REPLY_BYTES, wait_any=m.wait_any, standing=self._standing
        )
        return ResultsRead(rid=m.rid, results=results)

    async def purge(self, m: PurgeJobs) -> JobsPurged:
        age = None if m.older_than_s is None else int(m.older_than_s * 1000)
        purged, used = await self._broker.purge(age)
        return JobsPurged(rid=m.rid, purged=purged, older_than_s=used / 1000)

    # ---- blobs and bundles ------------------------------------------------------------------------------------

    async def put_blob(self, m: PutBlob) -> BlobStored:
        return BlobStored(rid=m.rid, have=await self._broker.put_blob(m.blob, m.size, m.offset, m.data))

    async def get_blob(self, m: GetBlob) -> BlobRead:
        await self._check_leased("blob", m.blob)
        size, data = await self._broker.store.get_blob(m.blob, m.offset)
        return BlobRead(rid=m.rid, size=size, data=data)

    async def push_bundle(self, m: PushBundle) -> BundlePushed:
        version, created, missing, digest = await self._broker.push_bundle(m.name, m.files)
        return BundlePushed(rid=m.rid, version=version, created=created, missing=missing, digest=digest)

    async def list_bundles(self, m: ListBundles) -> BundlesListed:
        return BundlesListed(rid=m.rid, bundles=await self._broker.store.list_bundles(m.name))

    async def get_bundle(self, m: GetBundle) -> BundleGot:
        await self._check_leased("bundle", m.ref)
        view, files = await self._broker.store.get_bundle(m.ref)
        return BundleGot(rid=m.rid, bundle=view, files=files)

    # ---- the grid -------------------------------------------------------------------------------------------

    async def workers(self, m: ListWorkers) -> WorkersListed:
        return WorkersListed(rid=m.rid, workers=self._broker.worker_views())

    async def status(self, m: GetStatus) -> StatusReported:
        counts, workers, slots = self._broker.status()
        running = counts.get(JobState.RUNNING, 0)
        return StatusReported(rid=m.rid, counts=counts, workers=workers, slots=slots, running=running)

    async def report(self, m: GetReport) -> ReportReady:
        if m.by not in REPORT_BY:
            raise InvalidRequest(f"a report is by {', '.join(REPORT_BY)}, not {m.by!r}")
        owner = authorization.owner_filter(self._who)  # a submit token: its own jobs only
        rows = await self._broker.store.report(m.by, m.since_ms, owner)
        return ReportReady(rid=m.rid, by=m.by, since_ms=m.since_ms, rows=rows)

    # ---- tokens (role admin) -----------------------------------------------------------------------------------

    async def create_token(self, m: CreateToken) -> TokenCreated:
        credential, view = await self._broker.create_token(m.name, m.role, m.queues, m.expires_s)
        return TokenCreated(rid=m.rid, credential=credential, token=view)

    async def list_tokens(self, m: ListTokens) -> TokensListed:
        return TokensListed(rid=m.rid, tokens=await self._broker.store.list_tokens())

    async def revoke_token(self, m: RevokeToken) -> TokenRevoked:
        view, closed = await self._broker.revoke_token(m.name)
        return TokenRevoked(rid=m.rid, token=view, closed=closed)

    # ---- periodic schedules (a submit token: its own only; a read token: without their arguments) --------------

    async def add_schedule(self, m: AddSchedule) -> ScheduleAdded:
        authorization.check_queues(self._who, [m.spec])
        view = await self._broker.schedules.add(m.name, m.cron, m.tz, m.catch_up, m.spec, self._who.name)
        return ScheduleAdded(rid=m.rid, schedule=view)

    async def list_schedules(self, m: ListSchedules) -> SchedulesListed:
        views = await self._broker.schedules.list_all(authorization.owner_filter(self._who))
        return SchedulesListed(rid=m.rid, schedules=[self._schedule_seen(v) for v in views])

    async def show_schedule(self, m: ShowSchedule) -> ScheduleShown:
        view, runs = await self._broker.schedules.show(m.name)
        self._check_schedule_owner(view, "show")
        return ScheduleShown(rid=m.rid, schedule=self._schedule_seen(view), runs=runs)

    async def change_schedule(self, m: ChangeSchedule) -> ScheduleChanged:
        view, _ = await self._broker.schedules.show(m.name)
        self._check_schedule_owner(view, m.action)
        return ScheduleChanged(rid=m.rid, schedule=await self._broker.schedules.change(m.name, m.action))

    def _check_schedule_owner(self, view: ScheduleView, what: str) -> None:
        owner = authorization.owner_filter(self._who)
        if owner is not None and view.owner != owner:
            raise authorization.refusal(self._who, f"{what} schedule {view.name!r}", f"it belongs to {view.owner!r}")

    def _schedule_seen(self, view: ScheduleView) -> ScheduleView:
        if self._who.role != "read" or len(view.argv) <= 1:
            return view
        return msgspec.structs.replace(view, argv=view.argv[:1])

    # ---- what the rule table cannot check ------------------------------------------------------------------

    async def check_owned(self, refs: Sequence[str], what: str) -> None:
        """A submit token acts only on its own jobs: Forbidden naming the first job (or group) of another."""
        owner = authorization.owner_filter(self._who)
        if owner is None or not refs:
            return
        found = await self._broker.store.foreign_job(refs, owner)
        if found is not None:
            ref, other = found
            raise authorization.refusal(self._who, f"{what} {authorization.job_ref(ref)}", f"it belongs to {other!r}")

    async def _check_leased(self, kind: str, item: str) -> None:
        """A worker token fetches only what the jobs leased to it now read (their bundle, their blobs)."""
        if self._who.role != "worker":
            return
        jobs = self._leased()
        if self._inputs is None or self._inputs[0] != jobs:
            refs, blobs = await self._broker.store.job_inputs(sorted(jobs)) if jobs else (set(), set())
            self._inputs = (jobs, refs, blobs)
        if item not in (self._inputs[1] if kind == "bundle" else self._inputs[2]):
            shown = item if kind == "bundle" else item[:12]
            raise authorization.refusal(self._who, f"fetch {kind} {shown}", "no job leased to it reads it")

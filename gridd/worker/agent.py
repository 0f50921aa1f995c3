"""The worker agent: keeps a connection to the broker, runs up to `slots` jobs, delivers every result.

Rules:
- Jobs belong to the agent, not to a connection: they keep running while the broker is away, and the
  agent re-attaches them (by lease) when it reconnects, with backoff.
- A result stays in `_results` until the broker has answered for it (recorded, or refused as stale).
- Work is asked for by one long-poll request at a time for as many jobs as there are free slots: an
  idle worker sends nothing but heartbeats. Slots are accounted by what each job asked for: a job runs
  only while the jobs running and it fit in `cpus` and `memory_mb` together, and each request carries
  the budget the jobs held (running or leased ahead) leave free. When a job ends while a request waits
  and the budget grew past what that request could take (it asked for less than the whole worker), the
  agent asks again (the broker answers the older request empty, and jobs granted to it on the way are
  kept, as late replies). While recent jobs are short (under PREFETCH_BELOW_MS),
  it also leases up to `slots` jobs ahead, so that a slot never idles for a round trip to the broker
  between two short jobs; with long jobs it leases nothing ahead, so no job waits behind another
  while a different worker is free.
- drain() (SIGTERM): ask for nothing more, give running jobs `grace_s`, hand back what still runs
  (its attempt not spent), deliver the results, and return.
- lend() (the host-idle policy, through gridd.worker.host): while the owner has the machine back, ask for
  nothing. SUSPEND stops the running command jobs' process groups (SIGSTOP) and keeps their leases alive
  by heartbeat; RUN continues them (SIGCONT). Jobs that cannot be stopped that way (Python tasks, which
  run inside the worker) and jobs leased ahead are handed back instead, as VACATE does with all of them:
  queued again at once, their attempt not spent. The broker hears of every state change.
"""

from __future__ import annotations

import os
import random
import statistics
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup, TaskStatus

from gridd.client import blobs
from gridd.client.connection import Connection, open_connection
from gridd.clock import Clock
from gridd.protocol.errors import ConnectionLost, GriddError, WorkerNameInUse
from gridd.protocol.messages import (
    AppendOutput,
    CompleteJobs,
    JobResult,
    JobsLeased,
    LeasedJob,
    LeaseRef,
    OutputChunk,
    RegisterWorker,
    RenewLeases,
    ReportWorkerState,
    RequestJobs,
    ReturnLeases,
    RevokeLeases,
)
from gridd.worker.bundles import BundleCache, run_in_bundle
from gridd.worker.capacity import Capacity
from gridd.worker.host import HostWatch
from gridd.worker.job_users import JobUsers
from gridd.worker.policy import Decision
from gridd.worker.runner import OUTPUT_EVERY_S, Pause, RunSettings, run_attempt
from gridd.worker.task_runner import TaskSettings, run_task

log = structlog.get_logger()

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
RESULTS_PER_FRAME_BYTES = 8 * 1024 * 1024
PREFETCH_BELOW_MS = 1000
T = TypeVar("T")
PREFETCH_MANY_BELOW_MS = 5


@dataclass(frozen=True, slots=True)
class AgentSettings:
    broker: str
    token: str
    name: str
    host: str
    slots: int
    queues: list[str]
    tags: dict[str, str]
    grace_s: float
    cpus: int | None = None  # None: as many as slots
    memory_mb: int | None = None  # None: no limit
    instance: str = ""  # kept in the work dir (gridd.worker.workdir): proves a reconnection is this worker
    insecure: bool = False  # plain TCP to the broker (--insecure)


@dataclass(eq=False, slots=True)
class _Running:
    """A job this worker holds a lease for: running, or leased ahead and waiting for a slot."""

    job: LeasedJob
    lease: LeaseRef
    scope: anyio.CancelScope
    started: bool = False
    handed_back: bool = False
    pause: Pause = field(default_factory=Pause)


class WorkerAgent:
    """One worker process's link to the grid."""

    def __init__(
        self,
        settings: AgentSettings,
        run: RunSettings,
        clock: Clock,
        *,
        tasks: TaskSettings | None = None,
        lock: int | None = None,
        bundle_dir: Path | None = None,
    ) -> None:
        self._s = settings
        self._capacity = Capacity(settings.slots, settings.cpus or settings.slots, settings.memory_mb)
        # Beside the work dir by default (the work dir is emptied at start; the cache must survive).
        bundle_dir = bundle_dir or run.work_dir.with_name(f"{run.work_dir.name}.bundles")
        self._bundles = BundleCache(bundle_dir, self._connected_call)
        self._lock = lock  # the work dir's lock (an open file), released when run() ends
        self._run = run
        self._tasks = tasks
        self._clock = clock
        self._running: dict[str, _Running] = {}
        self._results: list[JobResult] = []
        self._outputs: list[OutputChunk] = []  # output of running jobs, to send as it comes
        self._changed = anyio.Event()  # a slot freed, a result arrived, or draining began
        self._draining = False
        self._connected: Connection | None = None
        self._jobs: TaskGroup | None = None
        self._registered = False  # once registered, later registrations are reconnections
        self._recent_ms: deque[int] = deque(maxlen=20)
        self._asking: anyio.CancelScope | None = None  # the lease request under way
        self.watch: HostWatch | None = None  # set by the composition root when the machine is only lent
        self._decision = Decision.RUN
        self._host_state = "available"
        self._suspended_since: float | None = None

    @property
    def job_users(self) -> JobUsers | None:
        """Who its command jobs run as (None: the worker's own user)."""
        return self._run.users

    @property
    def running(self) -> int:
        return sum(1 for r in self._running.values() if r.started)

    @property
    def draining(self) -> bool:
        return self._draining

    def drain(self) -> None:
        """Stop taking work and wind down (see the module's rules)."""
        if not self._draining:
            log.info("worker.draining", running=len(self._running), grace_s=self._s.grace_s)
            self._draining = True
            self._poke()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._run_until_drained(task_status)
        finally:
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None

    async def _run_until_drained(self, task_status: TaskStatus[None]) -> None:
        async with anyio.create_task_group() as jobs:
            self._jobs = jobs
            if self.watch is not None:
                await jobs.start(self.watch.run, self)
            task_status.started()
            with anyio.CancelScope() as links:
                jobs.start_soon(self._wind_down, links)
                await self._keep_connected(jobs)
            # Drained: wind-down cancelled the link loop once results were delivered (or the broker stayed away).
            jobs.cancel_scope.cancel()

    # ---- connection ---------------------------------------------------------------------------------

    async def _keep_connected(self, jobs: TaskGroup) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            try:
                async with open_connection(
                    self._s.broker, self._s.token, role="worker", name=self._s.name, insecure=self._s.insecure
                ) as conn:
                    backoff = BACKOFF_MIN_S
                    await self._serve(conn, jobs)
            except* WorkerNameInUse as group:
                log.warning("worker.name_in_use", error=str(group.exceptions[0]))
            except* ConnectionLost as group:
                log.warning("worker.disconnected", error=str(group.exceptions[0]), retry_in_s=round(backoff, 2))
            except* GriddError as group:
                log.error("worker.refused", error=str(group.exceptions[0]), retry_in_s=round(backoff, 2))
            self._connected = None
            await anyio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _held_leases(self) -> list[LeaseRef]:
        """Leases this worker still answers for: jobs held (running or leased ahead) and results not
        yet acknowledged, so the broker keeps them current until each outcome is recorded."""
        held = [r.lease for r in self._running.values() if not r.handed_back]
        return held + [LeaseRef(job_id=r.job_id, lease=r.lease) for r in self._results]

    async def _serve(self, conn: Connection, jobs: TaskGroup) -> None:
        refs = self._held_leases()
        reply = await conn.request(
            lambda rid: RegisterWorker(
                rid=rid,
                restarted=not self._registered,
                host=self._s.host,
                slots=self._s.slots,
                queues=self._s.queues,
                tags=self._s.tags,
                running=refs,
                tasks=self._tasks.modules if self._tasks else [],
                state=self.state,
                cpus=self._capacity.cpus,
                memory_mb=self._capacity.memory_mb,
                instance=self._s.instance,
            )
        )
        log.info("worker.connected", broker=self._s.broker, attached=len(refs) - len(reply.lost), lost=len(reply.lost))
        self._registered = True
        self._stop(reply.lost, why="lost while disconnected")
        conn.on_late_reply = lambda message: self._late_reply(conn, message)
        self._connected = conn
        self._poke()  # tasks waiting to move a payload may go on
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._heartbeat, conn, conn.welcome.heartbeat_s)
            tg.start_soon(self._deliver, conn)
            tg.start_soon(self._take_work, conn)
            tg.start_soon(self._obey, conn)
            tg.start_soon(self._send_output, conn)
            tg.start_soon(self._report_state, conn, self.state)

    async def _heartbeat(self, conn: Connection, every_s: float) -> None:
        while True:
            await anyio.sleep(every_s)
            refs = self._held_leases()
            reply = await conn.request(lambda rid: RenewLeases(rid=rid, leases=refs))  # noqa: B023 - called at once
            self._stop(reply.lost, why="lease no longer current")

    async def _obey(self, conn: Connection) -> None:
        async for message in conn.pushes:
            if isinstance(message, RevokeLeases):
                self._stop(message.leases, why="cancelled")
        raise conn.closed_error()

    async def _take_work(self, conn: Connection) -> None:
        while not self._draining:
            prefetch = self._prefetch()
            want = self._s.slots + prefetch - len(self._running)
            cpus, memory_mb = self._budget(prefetch)
            if want <= 0 or cpus < 1 or not self._accepting:
                await self._wait_change()
                continue
            # Cancelled when draining begins or the owner takes the machine back; the broker then answers
            # the request empty (ReportWorkerState), and any jobs it granted meanwhile go back unspent.
            with anyio.CancelScope() as self._asking:
                await self._ask(conn, RequestJobs(rid=0, max_jobs=want, cpus=cpus, memory_mb=memory_mb))
            self._asking = None

    async def _ask(self, conn: Connection, request: RequestJobs) -> None:
        """Ask for jobs and take on those granted (see _take); returns once some were, or when the budget
        grew before any was (then the caller asks again, and the broker answers this request empty)."""
        async with anyio.create_task_group() as tg:

            async def ask() -> None:
                reply = await conn.request(lambda rid: msgspec.structs.replace(request, rid=rid))
                self._take(conn, reply.jobs)  # at once: a cancellation from here on must not lose them
                tg.cancel_scope.cancel()

            tg.start_soon(ask)
            while True:
                await self._wait_change()
                if self._outgrown(request):
                    tg.cancel_scope.cancel()
                    break

    def _outgrown(self, request: RequestJobs) -> bool:
        """Whether the budget free now takes a job that `request`'s could not: it grew, and the request's
        was smaller than the whole worker (a budget that holds the worker's size holds any job it runs)."""
        cpus, memory_mb = self._budget(self._prefetch())
        asked_cpus, asked_memory = request.cpus or 0, request.memory_mb or 0
        if cpus > asked_cpus and asked_cpus < self._capacity.cpus:
            return True
        full_memory = self._capacity.memory_mb
        return full_memory is not None and (memory_mb or 0) > asked_memory and asked_memory < full_memory

    def _take(self, conn: Connection, jobs: list[LeasedJob]) -> None:
        """Jobs granted: kept while this worker takes work, else (it began draining, or its owner took the
        machine back) handed back at once, unspent, rather than left to expire."""
        if not jobs or self._jobs is None:
            return
        if self._accepting:
            for job in jobs:
                ref = LeaseRef(job_id=job.job_id, lease=job.lease)
                self._running[job.job_id] = _Running(job, ref, anyio.CancelScope())
            self._start_ready()
            self._poke()
            return
        refs = [LeaseRef(job_id=j.job_id, lease=j.lease) for j in jobs]
        log.info("worker.late_grant_returned", jobs=[r.job_id for r in refs])
        self._jobs.start_soon(self._return, conn, refs)

    def _late_reply(self, conn: Connection, message: object) -> None:
        """A reply to a lease request this worker had given up (to ask with a larger budget, or to stop)."""
        if isinstance(message, JobsLeased):
            self._take(conn, message.jobs)

    def _prefetch(self) -> int:
        """How many jobs to lease beyond the free slots: `slots` while recent jobs are short, 16 x `slots`
        while they take milliseconds (about the time of a round trip to the broker), else 0."""
        if len(self._recent_ms) < 3:
            return 0
        median = statistics.median(self._recent_ms)
        if median < PREFETCH_MANY_BELOW_MS:
            return min(self._s.slots * 16, 1024)
        return self._s.slots if median < PREFETCH_BELOW_MS else 0

    def _budget(self, prefetch: int) -> tuple[int, int | None]:
        return self._capacity.budget((r.job.spec for r in self._running.values() if not r.handed_back), prefetch)

    def _start_ready(self) -> None:
        """Start jobs leased ahead, in the order they were leased, while they fit (see capacity.py)."""
        assert self._jobs is not None  # noqa: S101 - set by run() before any connection
        if not self._accepting:
            return
        held = [r for r in self._running.values() if not r.handed_back]
        waiting = [r for r in held if not r.started]
        running = [r.job.spec for r in held if r.started]
        for entry in waiting[: self._capacity.startable(running, [r.job.spec for r in waiting])]:
            entry.started = True
            self._jobs.start_soon(self._run_one, entry.job, entry.scope, entry.pause)

    async def _run_one(self, job: LeasedJob, scope: anyio.CancelScope, pause: Pause) -> None:
        log.info("job.started", job_id=job.job_id, attempt=job.attempt, lease=job.lease, argv0=job.spec.argv[0])
        result: JobResult | None = None
        with scope:
            if job.spec.task is not None and self._tasks is not None:
                result = await run_task(job, self._tasks, self._clock, self)
            elif job.spec.bundle is not None:
                result = await run_in_bundle(job, self._bundles, self._run, self._clock, self._outputs.extend, pause)
            else:
                result = await run_attempt(job, self._run, self._clock, self._outputs.extend, pause)
        entry = self._running.pop(job.job_id)
        self._start_ready()
        if result is not None and not entry.handed_back:
            self._recent_ms.append(result.ended_ms - result.started_ms)
            log.info(
                "job.ended",
                job_id=job.job_id,
                exit_code=result.exit_code,
                outcome=result.outcome,
                ms=result.ended_ms - result.started_ms,
            )
            self._results.append(result)
        self._poke()

    def _stop(self, leases: list[LeaseRef], *, why: str) -> None:
        for ref in leases:
            entry = self._running.get(ref.job_id)
            if entry is not None and entry.lease == ref:
                log.info("job.stopped", job_id=ref.job_id, lease=ref.lease, why=why)
                if entry.started:
                    entry.scope.cancel()
                else:
                    del self._running[ref.job_id]
                    self._poke()

    async def _send_output(self, conn: Connection) -> None:
        """Pass running jobs' output on (best effort: the result carries all of it anyway)."""
        while True:
            await anyio.sleep(OUTPUT_EVERY_S)
            if self._outputs:
                chunks, self._outputs = self._outputs, []
                await conn.send(AppendOutput(chunks=chunks))

    async def _report_state(self, conn: Connection, registered: str) -> None:
        """Tell the broker whenever this worker's state, or whether it wants jobs, changes."""
        sent = (registered, True)
        while True:
            now = (self.state, self._accepting)
            if now != sent:
                await conn.send(ReportWorkerState(state=now[0], accepting=now[1]))
                sent = now
            await self._wait_change()

    async def _deliver(self, conn: Connection) -> None:
        while True:
            if not self._results:
                await self._wait_change()
                continue
            batch = _batch(self._results)
            reply = await conn.request(lambda rid: CompleteJobs(rid=rid, results=batch))  # noqa: B023 - at once
            for outcome in reply.outcomes:
                if outcome.code:
                    log.warning("result.refused", job_id=outcome.job_id, error=outcome.message)
            delivered = {id(r) for r in batch}
            self._results = [r for r in self._results if id(r) not in delivered]
            self._poke()

    # ---- task payloads (the task runner's Payloads) -----------------------------------------------------------

    async def fetch(self, blob: str) -> bytes:
        """A task's large arguments, from the broker (after a reconnection if it is away)."""
        return await self._connected_call(lambda conn: blobs.download(conn, blob))

    async def store(self, data: bytes) -> str:
        """Put a task's large result in the broker; returns its blob id."""
        return await self._connected_call(lambda conn: blobs.upload(conn, data, "result"))

    async def _connected_call(self, call: Callable[[Connection], Awaitable[T]]) -> T:
        """`call` on the broker connection, again on the next one if the connection is lost meanwhile."""
        while True:
            while (conn := self._connected) is None:
                await self._wait_change()
            try:
                return await call(conn)
            except ConnectionLost:
                await self._wait_change()

    # ---- lending the machine ------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """What this worker's machine does for the grid now (messages.WORKER_STATES)."""
        if self._draining:
            return "draining"
        return "suspended" if self._suspended_since is not None else self._host_state

    @property
    def suspended_since_s(self) -> float | None:
        """When (the policy's monotonic seconds) this worker suspended its jobs; None while none are."""
        return self._suspended_since

    @property
    def _accepting(self) -> bool:
        return not self._draining and self._decision is Decision.RUN

    def job_groups(self) -> list[int]:
        """The process groups of the command jobs running now (their CPU time is not the owner's)."""
        return [pgid for e in self._running.values() if (pgid := e.pause.pgid) is not None]

    def lend(self, decision: Decision, host_state: str, now_s: float) -> None:
        """Carry out the host policy's decision (see the module's rules); `now_s` is the policy's clock."""
        if self._draining:
            return  # winding down already decides what happens to every job
        if decision is not self._decision:
            log.info("worker.lending", decision=str(decision), host_state=host_state, jobs=len(self._running))
        self._decision, self._host_state = decision, host_state
        if decision is Decision.RUN:
            for entry in self._running.values():
                entry.pause.resume()
            self._suspended_since = None
        else:
            self._take_back(vacate=decision is Decision.VACATE, now_s=now_s)
        self._poke()

    def _take_back(self, *, vacate: bool, now_s: float) -> None:
        if self._asking is not None:
            self._asking.cancel()
        back: list[_Running] = []
        for entry in self._running.values():
            if vacate or not entry.started or entry.job.spec.task is not None:
                back.append(entry)
            elif not entry.handed_back:
                entry.pause.suspend()
        refs = self._let_go(back)
        if refs and self._jobs is not None:
            self._jobs.start_soon(self._send_back, refs)
        suspended = any(e.pause.suspended for e in self._running.values() if not e.handed_back)
        if not suspended:
            self._suspended_since = None
        elif self._suspended_since is None:
            self._suspended_since = now_s

    # ---- draining -----------------------------------------------------------------------------------------

    async def _wind_down(self, links: anyio.CancelScope) -> None:
        while not self._draining:
            await self._wait_change()
        if self._asking is not None:
            self._asking.cancel()
        await self._hand_back([e for e in self._running.values() if not e.started])  # leased ahead: back at once
        with anyio.move_on_after(self._s.grace_s):
            while self._running:
                await self._wait_change()
        await self._hand_back(list(self._running.values()))
        with anyio.move_on_after(self._s.grace_s + 5):
            while self._running or self._results:
                await self._wait_change()
        if self._results:
            log.error("worker.results_undelivered", count=len(self._results))
        links.cancel()

    async def _hand_back(self, entries: list[_Running]) -> None:
        """Return these jobs' leases to the broker unfinished (their attempt not spent), stopping those
        that run."""
        await self._send_back(self._let_go(entries))

    async def _send_back(self, refs: list[LeaseRef]) -> None:
        if not refs:
            return
        conn = self._connected
        if conn is None:
            log.warning("worker.hand_back_skipped", jobs=len(refs), why="broker unreachable; leases will expire")
            return
        await self._return(conn, refs)

    def _let_go(self, entries: list[_Running]) -> list[LeaseRef]:
        """Stop these jobs (those not already let go) and forget them; their leases, to hand back."""
        entries = [e for e in entries if not e.handed_back]
        for entry in entries:
            entry.handed_back = True
            if entry.started:
                entry.scope.cancel()
            else:
                del self._running[entry.lease.job_id]
        return [e.lease for e in entries]

    async def _return(self, conn: Connection, refs: list[LeaseRef]) -> None:
        try:
            with anyio.fail_after(5):
                await conn.request(lambda rid: ReturnLeases(rid=rid, leases=refs))
            log.info("worker.handed_back", jobs=[r.job_id for r in refs])
        except (GriddError, TimeoutError) as exc:
            log.warning("worker.hand_back_failed", jobs=len(refs), error=str(exc))

    # ---- plumbing -----------------------------------------------------------------------------------------

    def _poke(self) -> None:
        """Wake every task waiting for a change. The poker, never a waiter, replaces the event: a
        waiter that replaced it would orphan the others still waiting on the old one."""
        self._changed.set()
        self._changed = anyio.Event()

    async def _wait_change(self) -> None:
        """Wait for the next poke (callers re-check their condition after it, in a loop)."""
        await self._changed.wait()


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

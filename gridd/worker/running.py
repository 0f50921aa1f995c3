"""RunningJobs: the jobs this worker holds a lease for, running or leased ahead and waiting for a slot.

Rules:
- Jobs belong to the worker, not to a connection: they keep running while the broker is away.
- A job leased ahead starts, in lease order, once it fits beside those running (gridd.worker.capacity),
  and only while the worker takes work (gridd.worker.desk).
- A job that ends hands its result to delivery (unless it was handed back: then its result is dropped,
  its attempt not spent) and nudges the leasing loop, whose budget has grown.
- How long recent jobs took decides how many jobs to lease ahead (PREFETCH_BELOW_MS).
- Each job that ends is logged (job.ended) at info if it failed or took LOG_JOBS_FROM_MS or more, else
  at debug: thousands of short successes a minute are the broker's record to keep, not the worker's.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import anyio
import structlog
from anyio.abc import TaskGroup

from gridd.clock import Clock
from gridd.protocol.messages import JobResult, LeasedJob, LeaseRef
from gridd.worker.bundles import BundleCache, run_in_bundle
from gridd.worker.capacity import Capacity
from gridd.worker.delivery import Delivery
from gridd.worker.desk import Desk
from gridd.worker.nudge import Nudge
from gridd.worker.runner import Pause, RunSettings, run_attempt
from gridd.worker.task_runner import Payloads, TaskSettings, run_task

log = structlog.get_logger()

PREFETCH_BELOW_MS = 1000
PREFETCH_MANY_BELOW_MS = 5
LOG_JOBS_FROM_MS = 1000  # a job that succeeded sooner is logged at debug only


@dataclass(frozen=True, slots=True)
class Runners:
    """How each kind of job runs: Python tasks, commands in a bundle, plain commands."""

    run: RunSettings
    clock: Clock
    bundles: BundleCache
    payloads: Payloads
    tasks: TaskSettings | None = None


@dataclass(eq=False, slots=True)
class Held:
    """A job this worker holds a lease for: running, or leased ahead and waiting for a slot."""

    job: LeasedJob
    lease: LeaseRef
    scope: anyio.CancelScope
    started: bool = False
    handed_back: bool = False
    pause: Pause = field(default_factory=Pause)


class RunningJobs:
    """The jobs held, started and stopped here (see the module's rules)."""

    def __init__(self, capacity: Capacity, runners: Runners, desk: Desk, delivery: Delivery, freed: Nudge) -> None:
        self.capacity = capacity
        self._runners = runners
        self._desk = desk
        self._delivery = delivery
        self._freed = freed  # the leasing loop's: a job is gone, its budget grew
        self._held: dict[str, Held] = {}
        self._recent_ms: deque[int] = deque(maxlen=20)
        self._tg: TaskGroup | None = None
        self._emptied: anyio.Event | None = None  # set once no job is held, while someone waits for it

    def attach(self, tg: TaskGroup) -> None:
        """The task group jobs run in (the agent's, for as long as it runs)."""
        self._tg = tg

    def __len__(self) -> int:
        return len(self._held)

    def __iter__(self) -> Iterator[Held]:
        return iter(list(self._held.values()))

    @property
    def started(self) -> int:
        return sum(1 for h in self._held.values() if h.started)

    def held_leases(self) -> list[LeaseRef]:
        """Leases this worker still answers for: the jobs held that it has not handed back."""
        return [h.lease for h in self._held.values() if not h.handed_back]

    def groups(self) -> list[int]:
        """The process groups of the command jobs running now (their CPU time is not the owner's)."""
        return [pgid for h in self._held.values() if (pgid := h.pause.pgid) is not None]

    def prefetch(self) -> int:
        """How many jobs to lease beyond the free slots: `slots` while recent jobs are short, 16 x `slots`
        while they take milliseconds (about the time of a round trip to the broker), else 0."""
        if len(self._recent_ms) < 3:
            return 0
        median = statistics.median(self._recent_ms)
        slots = self.capacity.slots
        if median < PREFETCH_MANY_BELOW_MS:
            return min(slots * 16, 1024)
        return slots if median < PREFETCH_BELOW_MS else 0

    def _short_and_busy(self) -> bool:
        """Whether other jobs are running that, like the recent ones, end within milliseconds."""
        busy = any(h.started and not h.handed_back for h in self._held.values())
        return busy and len(self._recent_ms) >= 3 and statistics.median(self._recent_ms) < PREFETCH_MANY_BELOW_MS

    def budget(self, prefetch: int) -> tuple[int, int | None]:
        """The cpus and MiB the next lease request may claim."""
        return self.capacity.budget((h.job.spec for h in self._held.values() if not h.handed_back), prefetch)

    def hold(self, jobs: list[LeasedJob]) -> None:
        """Jobs granted: held, and started as they fit. A grant this worker already holds (the same job under
        the same lease, heard twice: a late reply to a lease request it had given up) is not run again."""
        for job in jobs:
            held = self._held.get(job.job_id)
            if held is not None and held.lease.lease == job.lease:
                log.info("job.grant_repeated", job_id=job.job_id, lease=job.lease)
                continue
            self._held[job.job_id] = Held(job, LeaseRef(job_id=job.job_id, lease=job.lease), anyio.CancelScope())
        self._start_ready()

    def stop(self, leases: list[LeaseRef], *, why: str) -> None:
        """The broker no longer holds these leases current: stop their jobs, report nothing."""
        for ref in leases:
            held = self._held.get(ref.job_id)
            if held is not None and held.lease == ref:
                log.info("job.stopped", job_id=ref.job_id, lease=ref.lease, why=why)
                if held.started:
                    held.scope.cancel()
                else:
                    self._forget(ref.job_id)

    def let_go(self, entries: list[Held]) -> list[LeaseRef]:
        """Stop these jobs (those not already let go) and forget them; their leases, to hand back."""
        entries = [h for h in entries if not h.handed_back]
        for held in entries:
            held.handed_back = True
            if held.started:
                held.scope.cancel()
            else:
                self._forget(held.lease.job_id)
        return [h.lease for h in entries]

    def suspend(self, *, vacate: bool) -> list[LeaseRef]:
        """The owner takes the machine back: stop the command jobs' process groups, and let go of the
        rest (all of them with `vacate`): jobs leased ahead, and Python tasks, which run inside the
        worker. Returns the leases to hand back."""
        back: list[Held] = []
        for held in self._held.values():
            if vacate or not held.started or held.job.spec.task is not None:
                back.append(held)
            elif not held.handed_back:
                held.pause.suspend()
        return self.let_go(back)

    def resume(self) -> None:
        for held in self._held.values():
            held.pause.resume()

    def any_suspended(self) -> bool:
        return any(h.pause.suspended for h in self._held.values() if not h.handed_back)

    async def wait_empty(self) -> None:
        """Until no job is held."""
        while self._held:
            if self._emptied is None:
                self._emptied = anyio.Event()
            await self._emptied.wait()

    def _forget(self, job_id: str) -> Held:
        held = self._held.pop(job_id)
        if not self._held and self._emptied is not None:
            self._emptied.set()
            self._emptied = None
        self._freed()
        return held

    def _start_ready(self) -> None:
        """Start jobs leased ahead, in the order they were leased, while they fit (see capacity.py)."""
        assert self._tg is not None  # noqa: S101 - attached by the agent before any connection
        if not self._desk.accepting:
            return
        held = [h for h in self._held.values() if not h.handed_back]
        waiting = [h for h in held if not h.started]
        running = [h.job.spec for h in held if h.started]
        for entry in waiting[: self.capacity.startable(running, [h.job.spec for h in waiting])]:
            entry.started = True
            self._tg.start_soon(self._run_one, entry.job, entry.scope, entry.pause)

    async def _run_one(self, job: LeasedJob, scope: anyio.CancelScope, pause: Pause) -> None:
        # A job's lines are at info only when they say something (it failed, or it took a while): a short
        # job's two lines cost the worker as much as the rest of its work for that job, and the broker
        # logs every start and finish anyway (its job.started and job.finished, the grid's record).
        log.debug("job.started", job_id=job.job_id, attempt=job.attempt, lease=job.lease, argv0=job.spec.argv[0])
        result: JobResult | None = None
        with scope:
            result = await self._attempt(job, pause)
        entry = self._forget(job.job_id)
        self._start_ready()
        if result is not None and not entry.handed_back:
            ms = result.ended_ms - result.started_ms
            self._recent_ms.append(ms)
            quiet = result.exit_code == 0 and ms < LOG_JOBS_FROM_MS
            (log.debug if quiet else log.info)(
                "job.ended",
                job_id=job.job_id,
                attempt=job.attempt,
                lease=job.lease,
                argv0=job.spec.argv[0],
                exit_code=result.exit_code,
                outcome=result.outcome,
                ms=ms,
            )
            self._delivery.add(result, more_soon=self._short_and_busy())

    async def _attempt(self, job: LeasedJob, pause: Pause) -> JobResult:
        r = self._runners
        if job.spec.task is not None and r.tasks is not None:
            return await run_task(job, r.tasks, r.clock, r.payloads)
        output = self._delivery.add_output
        if job.spec.bundle is not None:
            return await run_in_bundle(job, r.bundles, r.run, r.clock, output, pause)
        return await run_attempt(job, r.run, r.clock, output, pause)

"""Gang jobs as the dispatcher serves them (submit --gang N): a gang starts only when N waiting workers can
take one member each, and an aged gang keeps the workers that free up until it has N. Also what `gridd
why` says of a gang the grid cannot hold.

Design (HTCondor's parallel universe, Slurm's multi-node jobs, kept small):
- All or nothing: at each dispatch pass, before ordinary jobs are leased, each queued gang (best first:
  priority, then age) looks for N waiting lease requests of distinct workers that may run it (its lane,
  and room for one member within the request's budget); if it finds them, the store leases it whole
  (Store.lease_gangs, one transaction) and each request gets its member. Else it takes nothing, and the
  free workers go on running smaller jobs (backfill).
- The reservation that ages: a gang that has been ready for RESERVE_AFTER_MS and still lacks workers
  holds back the requests that could take a member of it: those workers get no ordinary job and wait,
  until N of them are free together. Without it a stream of small jobs would keep a gang waiting for ever;
  with it, a gang waits at most about a minute plus the time the jobs already running take to end.
- No deadlock: one gang holds workers at a time, over the whole grid (not one per queue: a worker serving
  two queues could be held half by each gang, and neither would ever start). It is the best aged gang that
  the connected workers could hold at all; one larger than that holds nothing (`gridd why` says so), and
  the gang after it may hold instead. Gangs never hold a part of their seats across passes otherwise: a
  younger gang starts only on workers the holding gang cannot use, or when there are enough for both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from gridd.broker.matching import NEVER, Budget, Lane, may_lease
from gridd.broker.store import Store
from gridd.broker.store.gang_rows import GangGrant, GangSeat, QueuedGang
from gridd.broker.workers import WorkerLink, WorkerRegistry
from gridd.clock import Clock
from gridd.protocol.messages import JobView, LeasedJob

RESERVE_AFTER_MS = 60_000  # a gang ready this long keeps the workers that free up for itself
LOOKED_AT = 64  # the queued gangs one pass considers, the best first


class Asking(Protocol):
    """A waiting lease request, as the gang pass reads it (scheduler._Request)."""

    @property
    def worker(self) -> str: ...
    @property
    def instance(self) -> str: ...
    @property
    def budget(self) -> Budget: ...
    @property
    def lanes(self) -> Callable[[], Sequence[Lane]]: ...


R = TypeVar("R", bound=Asking)


class GangDispatch:
    """The gang half of a dispatch pass: which requests get a gang's members, and which are held for one."""

    def __init__(self, store: Store, workers: WorkerRegistry, ttl_ms: int, clock: Clock) -> None:
        self._store = store
        self._workers = workers
        self._clock = clock
        self._ttl_ms = ttl_ms
        self._queued: list[QueuedGang] = []
        self._epoch = -1  # the dispatcher's epoch at which _queued was read (it changes when a job may queue)
        self.holding: tuple[str, list[str]] | None = None  # the gang holding workers at the last pass, and them

    async def serve(
        self, pending: Sequence[R], now_ms: int, epoch: int
    ) -> tuple[list[tuple[R, LeasedJob, bool]], set[R]]:
        """Lease the gangs that find seats among `pending`: (request, its member, whether it is rank 0: the
        one to announce) for each seat; and the requests held for the aged gang that still lacks some."""
        self.holding = None
        if not pending:
            return [], set()
        if epoch != self._epoch:  # a gang's own lease changes nothing here: it is taken out below
            self._queued = await self._store.queued_gangs(LOOKED_AT)
            self._epoch = epoch
        if not self._queued:
            return [], set()
        free = list({r.worker: r for r in pending}.values())  # one seat per worker
        grants: list[tuple[QueuedGang, list[R]]] = []
        held: set[R] = set()
        for gang in self._queued:
            if gang.not_before_ms > now_ms:
                continue
            fit = [r for r in free if _fits(r, gang)]
            if len(fit) >= gang.size:
                grants.append((gang, fit[: gang.size]))
            elif self.holding is None and self._aged(gang, now_ms):
                self.holding = (gang.job_id, [r.worker for r in fit])
                held.update(fit)
            else:
                continue
            taken = set(fit[: gang.size]) if len(fit) >= gang.size else set(fit)
            free = [r for r in free if r not in taken]
        if not grants:
            return [], held
        seated = [
            GangGrant(gang.job_id, [GangSeat(r.worker, r.instance, self._host(r.worker)) for r in seats])
            for gang, seats in grants
        ]
        # The clock read as the call is queued, not at the pass's start (the read of the queued gangs came
        # between): a gang freed by a dependency that ended at T starts at T or later (scheduler.py).
        leased = await self._store.lease_gangs(seated, self._clock.now_ms(), self._ttl_ms)
        done = {gang.job_id for gang, _ in grants}
        self._queued = [g for g in self._queued if g.job_id not in done]  # leased, or no longer queued
        out: list[tuple[R, LeasedJob, bool]] = []
        for (_, seats), members in zip(grants, leased, strict=True):
            out += [(r, job, rank == 0) for rank, (r, job) in enumerate(zip(seats, members, strict=False))]
        for r, job, first in out:  # rank 0's worker is told by the ledger, as of any lease; the others' here
            link = None if first else self._workers.get(r.worker)
            if link is not None:
                link.jobs.add(job.job_id)
        return out, held

    def _aged(self, gang: QueuedGang, now_ms: int) -> bool:
        """Whether `gang` has waited long enough to hold workers, and enough connected workers could run it."""
        return now_ms - gang.ready_ms >= RESERVE_AFTER_MS and self._capable(gang) >= gang.size

    def _capable(self, gang: QueuedGang) -> int:
        """The connected workers that could take a member of `gang` once free."""
        return sum(1 for w in self._workers.all() if _could_hold(w, gang.lane, gang.cpus, gang.memory_mb))

    def _host(self, worker: str) -> str:
        link = self._workers.get(worker)
        return link.host if link is not None else worker


def _fits(request: Asking, gang: QueuedGang) -> bool:
    """Whether a waiting request may take one member of `gang` now."""
    budget = request.budget
    if budget.job_cpus is not None and budget.job_cpus < gang.cpus:
        return False
    if budget.job_memory_mb is not None and budget.job_memory_mb < gang.memory_mb:
        return False
    return budget.take([(gang.cpus, gang.memory_mb)])[0] and gang.lane in request.lanes()


def _could_hold(link: WorkerLink, lane: Lane, cpus: int, memory_mb: int) -> bool:
    big_enough = (link.cpus is None or link.cpus >= cpus) and (link.memory_mb is None or link.memory_mb >= memory_mb)
    return big_enough and may_lease(link, lane)


def gang_wait(job: JobView, fits: Sequence[tuple[WorkerLink, tuple[str, str] | None]]) -> tuple[str, str] | None:
    """Why a queued gang waits for workers, and what would help: fewer connected workers could ever run it
    than it has members, or too few of them are free at once. `fits`: each connected worker and what keeps
    it from taking the job now (matching.blocker)."""
    if job.gang < 2:
        return None
    able = [w.name for w, b in fits if b is None or b[0] not in NEVER]
    if len(able) >= job.gang:
        free = [w.name for w, b in fits if b is None]
        reason = (
            f"queued: a gang of {job.gang} starts when {job.gang} workers that can run it are free at once;"
            f" {len(free)} {'is' if len(free) == 1 else 'are'} now{': ' + ', '.join(free) if free else ''}"
        )
        return reason, "workers finishing their jobs (a gang that waited a minute keeps those that free up)"
    some = f": {', '.join(able)}" if able else ""
    reason = (
        f"a gang of {job.gang} needs {job.gang} workers that can run it at once;"
        f" only {len(able)} connected worker{'' if len(able) == 1 else 's'} can{some}"
    )
    more = job.gang - len(able)
    remedy = (
        f"{more} more worker{'' if more == 1 else 's'} serving queue {job.queue!r} that can run it,"
        f" or cancel it and submit with a smaller --gang"
    )
    return reason, remedy

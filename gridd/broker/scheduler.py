"""The dispatcher: answers workers' long-poll requests for jobs as jobs become eligible.

Rule: one task owns the queue of waiting requests and does all leasing, so two requests never race for
the same job and an idle grid costs nothing: the task sleeps until a submit, a requeue or a retry delay
wakes it. Workers never poll. A request's lanes are asked for at each pass (a lane that appears while a
worker waits reaches it), and each request carries its worker's free Budget (see matching.py). A worker
has one request at a time: a newer one (its budget grew: a job ended) supersedes the older, which is
answered empty; jobs leased for the older one meanwhile go to the newer.

The lanes found drained are remembered across passes until a change that may make a job eligible (any
transition but a lease: a submit, a requeue, a finish that frees a --max-running token or a dependency)
or the next delayed job's time: a worker asking again finds the answer without a database call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio
import structlog
from anyio.abc import TaskStatus

from gridd.broker.gangs import GangDispatch
from gridd.broker.matching import Budget, DrainedLanes, Lane
from gridd.broker.store import Ask, Store
from gridd.clock import Clock
from gridd.protocol.errors import GriddError
from gridd.protocol.messages import LeasedJob

log = structlog.get_logger()


@dataclass(eq=False, slots=True)
class _Request:
    worker: str
    lanes: Callable[[], Sequence[Lane]]
    max_jobs: int
    budget: Budget
    queues: tuple[str, ...]  # the worker's queues: a pass looks at `lanes` only if one has jobs queued
    done: anyio.Event = field(default_factory=anyio.Event)
    jobs: list[LeasedJob] = field(default_factory=list)
    successor: _Request | None = None  # the request of the same worker that superseded this one
    withdrawn: bool = False  # its worker asked for nothing more while its lease call was under way
    instance: str = ""  # the worker's instance id, which the leases are bound to (store.lease_jobs)


class Dispatcher:
    """Leases the best eligible jobs to waiting workers, in the order the workers asked."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        lease_ttl_ms: int,
        on_leased: Callable[[str, list[LeasedJob]], None],
        queued: Callable[[str], int],
        gangs: GangDispatch | None = None,
    ) -> None:
        self._store = store
        self.gangs = gangs  # gang jobs (gangs.py): leased whole, before the ordinary jobs of each pass
        self._queued = queued  # jobs queued in a queue now (the ledger's count)
        self._clock = clock
        self._ttl_ms = lease_ttl_ms
        self._on_leased = on_leased
        self._pending: deque[_Request] = deque()
        self._serving: set[_Request] = set()  # the requests whose lease call is under way
        self._wake = anyio.Event()
        self._epoch = 0  # counts the changes that may have made a job eligible
        # The lanes that gave all they had (matching.py), valid while _epoch is _drained_epoch
        # and the clock is before _next_ms (when a delayed job becomes eligible; None: none is delayed).
        self._drained = DrainedLanes()
        self._drained_epoch = -1
        self._next_ms: int | None = None
        self._next_known = False
        self.lanes_considered = 0  # lanes the requests of the last pass offered (tests assert on it)
        self.requests_read = 0  # requests whose lanes passes have read, since the start (tests assert on it)

    @property
    def waiting(self) -> int:
        """Lease requests waiting for jobs now."""
        return len(self._pending)

    def wake(self, *, eligible: bool = True) -> None:
        """Look again: a request came, or (`eligible`) a job may have become eligible."""
        if eligible:
            self._epoch += 1
        self._wake.set()

    async def lease(
        self,
        worker: str,
        lanes: Callable[[], Sequence[Lane]],
        queues: Sequence[str],
        max_jobs: int,
        budget: Budget | None = None,
        instance: str = "",
    ) -> list[LeasedJob]:
        """Wait until at least one job of `lanes()` is leased to `worker`, then return up to `max_jobs`
        that fit `budget` together. `queues`: those `lanes()` are of (a pass skips the request while none
        of them has a job queued)."""
        request = _Request(worker, lanes, max_jobs, budget or Budget(), tuple(queues), instance=instance)
        for old in [r for r in self._pending if r.worker == worker]:
            self._pending.remove(old)
            old.successor = request
            old.done.set()  # answered empty
        self._pending.append(request)
        self.wake(eligible=False)
        try:
            await request.done.wait()
        finally:
            if not request.done.is_set():
                self._pending.remove(request)
        return request.jobs

    def withdraw(self, worker: str) -> None:
        """The worker asks for nothing now: answer its waiting requests at once, with no jobs. A request
        being served right now is left to finish: the jobs it leases are committed, and must reach the
        worker (which hands them back) rather than sit leased to it unknown."""
        for request in [r for r in self._pending if r.worker == worker]:
            if request in self._serving:
                request.withdrawn = True  # answered when its call returns, with what it leased
            else:
                self._pending.remove(request)
                request.done.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self._wake = anyio.Event()  # replaced before the pass, so a wake during it is not lost
            try:
                next_ms = await self._serve()
            except GriddError as exc:
                log.error("dispatch.failed", error=str(exc))
                next_ms = self._clock.now_ms() + 1000
            delay = None if next_ms is None else max(0.0, (next_ms - self._clock.now_ms()) / 1000)
            with anyio.move_on_after(delay if delay is not None else float("inf")):
                await self._wake.wait()

    async def _lease(self, asks: list[tuple[_Request, list[Lane]]], drained: DrainedLanes) -> None:
        """One store call for every request that has lanes to read: one transaction serves them all."""
        self._serving = {request for request, _ in asks}
        # The clock read as the call is queued: the store runs calls in the order they come, so every
        # result it has recorded before this lease came at an earlier time (a job freed by a dependency
        # that ended at T starts at T or later, never a moment before).
        leased_at = self._clock.now_ms()
        try:
            granted = await self._store.lease_for(
                [Ask(r.worker, lanes, r.max_jobs, r.budget, r.instance) for r, lanes in asks], leased_at, self._ttl_ms
            )
        finally:
            self._serving = set()
        for (request, lanes), jobs in zip(asks, granted, strict=True):
            drained.note(lanes, request.budget, request.max_jobs, [j.spec for j in jobs])
            if not jobs:
                if request.withdrawn and request in self._pending:
                    self._pending.remove(request)
                    request.done.set()
                continue
            # The leases are committed: announce them even if the worker went away during the call. Its
            # next registration hands them back unspent, or they expire after a TTL.
            self._on_leased(request.worker, jobs)
            self._hand(request, jobs)

    def _has_queued(self, queues: tuple[str, ...], busy: dict[tuple[str, ...], bool]) -> bool:
        """Has one of `queues` a job queued now?"""
        found = busy.get(queues)
        if found is None:
            queued = self._queued
            found = busy[queues] = any(queued(queue) > 0 for queue in queues)
        return found

    def _hand(self, request: _Request, jobs: list[LeasedJob]) -> None:
        """Answer `request` with the jobs leased for it (or its successor, if it was superseded meanwhile)."""
        while request not in self._pending and request.successor is not None:
            request = request.successor  # superseded during the store call: the newer one gets them
        if request in self._pending:
            self._pending.remove(request)
            request.jobs = jobs
            request.done.set()

    async def _serve(self) -> int | None:
        """One pass over the waiting requests; returns when the next delayed job becomes eligible."""
        now = self._clock.now_ms()
        epoch = self._epoch
        if epoch != self._drained_epoch or (self._next_ms is not None and now >= self._next_ms):
            self._drained, self._drained_epoch, self._next_ms = DrainedLanes(), epoch, None
            self._next_known = False
        drained = self._drained
        self.lanes_considered = 0
        seated, held = await self.gangs.serve(self._pending, now, epoch) if self.gangs else ([], set())
        for request, member, first in seated:
            if first:  # the gang's job, once: rank 0's lease is the job's
                self._on_leased(request.worker, [member])
            self._hand(request, [member])
        asks: list[tuple[_Request, list[Lane]]] = []
        # Whether any of a set of queues has a job queued, once per set a pass meets: a grid of many idle
        # workers looks at each of them in every pass that a change in another queue sets off.
        busy: dict[tuple[str, ...], bool] = {}
        for request in self._pending:
            if request in held:  # kept free for the gang that waited longest (gangs.py)
                continue
            if not self._has_queued(request.queues, busy):
                continue
            self.requests_read += 1
            offered = request.lanes()
            self.lanes_considered += len(offered)
            lanes = drained.open(offered, request.budget)
            if lanes:
                asks.append((request, lanes))
        if asks:
            await self._lease(asks, drained)
        if self._pending and drained and not self._next_known:
            self._next_ms = await self._store.next_eligible_ms(now)
            self._next_known = True
        if self._epoch != epoch:  # a job may have become eligible during the pass: forget what it found
            self._drained_epoch = -1
        return self._next_ms if self._pending and drained else None

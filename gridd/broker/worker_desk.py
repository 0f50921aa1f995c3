"""Workers as the broker serves them: joining and leaving, their leases (granted, renewed, handed back,
expired) and the results they send.

Rule: a lease's fate is decided by the store (its fencing token); this module commits through it, then
has the ledger tell everyone. A result for a lease that is no longer current is refused, logged and counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import structlog

from gridd.broker.events import EventHub
from gridd.broker.ledger import Ledger
from gridd.broker.matching import Budget, Lane, LaneBook
from gridd.broker.scheduler import Dispatcher
from gridd.broker.settings import BrokerSettings
from gridd.broker.store import Store
from gridd.broker.transitions import Transition
from gridd.broker.workers import WorkerLink, WorkerRegistry
from gridd.clock import Clock
from gridd.protocol.errors import ErrorCode
from gridd.protocol.messages import Event, JobResult, LeasedJob, LeaseRef, Outcome

log = structlog.get_logger()


class WorkerDesk:
    """The worker side of the broker: registry, leases, completions and the refusals they earn."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: BrokerSettings,
        workers: WorkerRegistry,
        lanes: LaneBook,
        dispatcher: Dispatcher,
        ledger: Ledger,
        hub: EventHub,
    ) -> None:
        self._store = store
        self._clock = clock
        self._settings = settings
        self._workers = workers
        self._lanes = lanes
        self._dispatcher = dispatcher
        self._ledger = ledger
        self._hub = hub
        self.stale_completions = 0  # results for a lease no longer current: refused
        self.foreign_completions = 0  # results sent for a lease granted to another worker: refused

    async def register_worker(
        self, link: WorkerLink, running: Sequence[LeaseRef], restarted: bool = True
    ) -> list[LeaseRef]:
        """Add a worker and re-attach the jobs it still runs; returns the leases it must stop."""
        self._workers.add(link)
        now = self._clock.now_ms()
        try:
            lost, changed = await self._store.attach_worker(
                link.name, running, now + self._settings.lease_ttl_ms, now, restarted, link.instance, link.lends
            )
        except BaseException:
            self._workers.remove(link)
            raise
        link.jobs = {ref.job_id for ref in running} - {ref.job_id for ref in lost}
        self._ledger.record(changed)
        log.info(
            "worker.joined",
            worker=link.name,
            host=link.host,
            slots=link.slots,
            queues=link.queues,
            cpus=link.cpus,
            memory_mb=link.memory_mb,
            tags=link.tags,
            attached=len(running) - len(lost),
            lost=len(lost),
        )
        self._hub.publish([Event(kind="worker.joined", ts_ms=now, worker=link.name, message=link.host)])
        return lost

    def set_worker_state(self, link: WorkerLink, state: str, accepting: bool) -> None:
        """The worker's machine changed hands (or it began draining); one that takes no jobs now gets
        none: its waiting lease request is answered empty."""
        if not accepting:
            self._dispatcher.withdraw(link.name)
        if state != link.state:
            log.info("worker.state_changed", worker=link.name, state=state, previous=link.state)
            link.observe(state)
            now = self._clock.now_ms()
            self._hub.publish([Event(kind="worker.state", ts_ms=now, worker=link.name, state=state)])

    def unregister_worker(self, link: WorkerLink) -> None:
        self._workers.remove(link)
        self._lanes.forget(link)
        log.info("worker.left", worker=link.name)
        self._hub.publish([Event(kind="worker.left", ts_ms=self._clock.now_ms(), worker=link.name)])

    async def lease(
        self, link: WorkerLink, max_jobs: int, cpus: int | None = None, memory_mb: int | None = None
    ) -> list[LeasedJob]:
        """Jobs for `link`, from the lanes it may lease at the time of leasing, that fit its free budget
        (`cpus`, `memory_mb`: None, no limit) and each its size."""
        budget = Budget.of(link, cpus, memory_mb)
        return await self._dispatcher.lease(
            link.name, lambda: self._leasable(link), link.queues, max_jobs, budget, link.instance
        )

    def _leasable(self, link: WorkerLink) -> list[Lane]:
        """`link`'s lanes in the queues that have queued jobs now."""
        return [x for x in self._lanes.for_worker(link) if self._ledger.queued(x[0]) > 0]

    async def renew(self, link: WorkerLink, leases: Sequence[LeaseRef]) -> tuple[list[LeaseRef], int]:
        now = self._clock.now_ms()
        link.last_seen_ms = now
        deadline = now + self._settings.lease_ttl_ms
        lost = await self._store.renew_leases(link.name, leases, deadline, link.instance) if leases else []
        link.jobs.difference_update(ref.job_id for ref in lost)  # a gang member's too (gangs.py)
        return lost, deadline

    async def complete(self, link: WorkerLink, results: Sequence[JobResult]) -> list[Outcome]:
        now = self._clock.now_ms()
        link.last_seen_ms = now
        results = [self._cut_output(link, r) for r in results]
        outcomes, changed = await self._store.complete_jobs(
            link.name, results, now, self._settings.retry_base_ms, link.instance, link.lends
        )
        for o in outcomes:
            if o.code == ErrorCode.BAD_RESULT:
                log.warning("result.refused", job_id=o.job_id, worker=link.name, state=o.state, error=o.message)
            elif o.code == ErrorCode.FOREIGN_LEASE:
                self.foreign_completions += 1
                log.warning(
                    "lease.foreign_completion",
                    job_id=o.job_id,
                    worker=link.name,
                    instance=link.instance,
                    error=o.message,
                    refused_total=self.foreign_completions,
                )
            elif o.code:
                self.stale_completions += 1
                log.warning(
                    "lease.stale_completion",
                    job_id=o.job_id,
                    worker=link.name,
                    state=o.state,
                    lease=next(r.lease for r in results if r.job_id == o.job_id),
                    refused_total=self.stale_completions,
                )
        self._ledger.record(changed)
        # It runs none of these now: a gang member's job may be another worker's in the ledger (gangs.py).
        link.jobs.difference_update(o.job_id for o in outcomes if o.code == 0)
        return outcomes

    def _cut_output(self, link: WorkerLink, result: JobResult) -> JobResult:
        """The broker keeps at most max_output_bytes of each stream, whatever a worker sends: past it, the
        output is cut to its first max_output_bytes and marked truncated (cut rather than refused: the
        result and the head of the output are kept, which is what the worker itself keeps)."""
        limit = self._settings.max_output_bytes
        if len(result.stdout) <= limit and len(result.stderr) <= limit:
            return result
        log.warning(
            "output.cut",
            job_id=result.job_id,
            worker=link.name,
            stdout_bytes=len(result.stdout),
            stderr_bytes=len(result.stderr),
            limit=limit,
        )
        return msgspec.structs.replace(
            result,
            stdout=result.stdout[:limit],
            stderr=result.stderr[:limit],
            stdout_truncated=result.stdout_truncated or len(result.stdout) > limit,
            stderr_truncated=result.stderr_truncated or len(result.stderr) > limit,
        )

    async def return_leases(self, link: WorkerLink, leases: Sequence[LeaseRef]) -> None:
        self._ledger.record(await self._store.return_leases(link.name, leases, link.instance), kind="job.returned")

    async def expire_leases(self, now_ms: int) -> list[Transition]:
        # A lease expires when its worker went silent: counted as lent if a worker of that name that is
        # still connected lends (one that is gone is unknown, NULL).
        changed = await self._store.expire_leases(now_ms, {w.name for w in self._workers.all() if w.lends})
        self._ledger.record(changed)
        return changed

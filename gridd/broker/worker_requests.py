"""The answers to what a worker asks on one connection: register, lease, renew, complete, return; and its
pushes (output of running attempts, state changes). It owns the connection's WorkerLink once registered.

Rule: every request but the registration is refused (NotAWorker) on a connection that has not
registered as a worker; leases are bound to the worker and its instance by the store, so a worker only
ever renews, completes or returns its own.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from gridd.broker import authorization
from gridd.broker.core import Broker
from gridd.broker.principals import Principal
from gridd.broker.workers import WorkerLink
from gridd.protocol.errors import BadFrame, NotAWorker
from gridd.protocol.messages import (
    AppendOutput,
    CompleteJobs,
    JobsCompleted,
    JobsLeased,
    LeasesRenewed,
    LeasesReturned,
    Message,
    RegisterWorker,
    RenewLeases,
    ReportWorkerState,
    RequestJobs,
    ReturnLeases,
    WorkerRegistered,
)


class WorkerRequests:
    """One connection's worker side: `link` is set once it registered. `push` queues a frame to the
    worker without blocking (a lease revocation)."""

    def __init__(self, broker: Broker, who: Principal, hello_name: str, push: Callable[[Message], None]) -> None:
        self._broker = broker
        self._who = who
        self._hello_name = hello_name
        self._push = push
        self.link: WorkerLink | None = None

    def leased(self) -> frozenset[str]:
        """The jobs leased to this connection's worker now (none if it is not one)."""
        return frozenset(self.link.jobs) if self.link is not None else frozenset()

    async def register(self, m: RegisterWorker) -> WorkerRegistered:
        if self.link is not None:
            raise BadFrame("this connection has already registered as a worker")
        authorization.check_worker(self._who, self._hello_name, m)
        now = self._broker.clock.now_ms()
        link = WorkerLink(
            name=self._hello_name,
            host=m.host,
            slots=m.slots,
            queues=list(m.queues),
            tags=dict(m.tags),
            tasks=list(m.tasks),
            cpus=m.cpus,
            memory_mb=m.memory_mb,
            connected_ms=now,
            last_seen_ms=now,
            push=self._push,
            state=m.state,
            instance=m.instance,
            credential_queues=self._who.queues if self._who.role == "worker" else (),
        )
        lost = await self._broker.register_worker(link, m.running, m.restarted)
        self.link = link
        structlog.contextvars.bind_contextvars(worker=link.name)
        return WorkerRegistered(rid=m.rid, lost=lost)

    async def lease(self, m: RequestJobs) -> JobsLeased:
        jobs = await self._broker.lease(self._registered(), m.max_jobs, m.cpus, m.memory_mb)
        return JobsLeased(rid=m.rid, jobs=jobs)

    async def renew(self, m: RenewLeases) -> LeasesRenewed:
        lost, deadline = await self._broker.renew(self._registered(), m.leases)
        return LeasesRenewed(rid=m.rid, lost=lost, deadline_ms=deadline)

    async def complete(self, m: CompleteJobs) -> JobsCompleted:
        return JobsCompleted(rid=m.rid, outcomes=await self._broker.complete(self._registered(), m.results))

    async def return_leases(self, m: ReturnLeases) -> LeasesReturned:
        await self._broker.return_leases(self._registered(), m.leases)
        return LeasesReturned(rid=m.rid)

    def report_state(self, m: ReportWorkerState) -> None:
        if self.link is None:
            raise BadFrame("a worker state from a connection that has not registered as a worker")
        self._broker.set_worker_state(self.link, m.state, m.accepting)

    def append_output(self, m: AppendOutput) -> None:
        if self.link is not None:  # no reply either way: it is a best-effort push
            jobs = self.link.jobs
            self._broker.outputs.relay([c for c in m.chunks if c.job_id in jobs])

    def unregister(self) -> None:
        """The connection ended: the worker is gone (its leases stay until they expire or it is back)."""
        if self.link is not None:
            self._broker.unregister_worker(self.link)

    def _registered(self) -> WorkerLink:
        if self.link is None:
            raise NotAWorker("this connection has not registered as a worker")
        return self.link

"""Leasing: asking the broker for work, and handing leases back unspent.

Rules:
- Work is asked for by one long-poll request at a time for as many jobs as there are free slots: an idle
  worker sends nothing but heartbeats. Each request carries the budget the jobs held (running or leased
  ahead) leave free (gridd.worker.capacity). When a job ends while a request waits and the budget grew
  past what that request could take (it asked for less than the whole worker), the worker asks again (the
  broker answers the older request empty, and jobs granted to it on the way are kept, as late replies).
- While recent jobs are short, it also leases ahead (gridd.worker.running decides how many), so that a
  slot never idles for a round trip to the broker between two short jobs. The jobs leased ahead are
  topped up once half of them have started, in one request, not one request per job that ended: each
  request is a frame and a transaction on the broker, which short jobs would otherwise pay one for each.
- Jobs granted while the worker takes no work (it began draining, or its owner took the machine back)
  are handed back at once, unspent, rather than left to expire.
- The loop is woken by its own Nudge: a job held is gone (its budget grew), or whether the worker takes
  work changed.
"""

from __future__ import annotations

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup

from gridd.client.connection import Connection
from gridd.protocol.errors import GriddError
from gridd.protocol.messages import JobsLeased, LeasedJob, LeaseRef, RequestJobs, ReturnLeases
from gridd.worker.desk import Desk
from gridd.worker.link import BrokerLink
from gridd.worker.nudge import Nudge
from gridd.worker.running import RunningJobs

log = structlog.get_logger()

RETURN_TIMEOUT_S = 5


class Leasing:
    """The lease request under way, and leases handed back (see the module's rules)."""

    def __init__(self, jobs: RunningJobs, desk: Desk, link: BrokerLink, wake: Nudge) -> None:
        self._jobs = jobs
        self._link = link
        self._desk = desk
        self._wake = wake  # nudged by the jobs (one is gone) and by the agent (`accepting` changed)
        self._asking: anyio.CancelScope | None = None  # the lease request under way
        self._tg: TaskGroup | None = None

    def attach(self, tg: TaskGroup) -> None:
        """Where leases handed back outside a connection's own tasks are sent from."""
        self._tg = tg

    async def take_work(self, conn: Connection) -> None:
        """Ask for jobs on `conn` whenever there is room, until draining begins."""
        jobs = self._jobs
        while not self._desk.draining:
            prefetch = jobs.prefetch()
            want = jobs.capacity.slots + prefetch - len(jobs)
            cpus, memory_mb = jobs.budget(prefetch)
            if want <= 0 or want < prefetch // 2 or cpus < 1 or not self._desk.accepting:
                await self._wake.wait()
                continue
            # Cancelled when draining begins or the owner takes the machine back; the broker then answers
            # the request empty (ReportWorkerState), and any jobs it granted meanwhile go back unspent.
            with anyio.CancelScope() as self._asking:
                await self._ask(conn, RequestJobs(rid=0, max_jobs=want, cpus=cpus, memory_mb=memory_mb))
            self._asking = None

    def stop_asking(self) -> None:
        """Give up the request under way (the broker answers it empty)."""
        if self._asking is not None:
            self._asking.cancel()

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
                await self._wake.wait()
                if self._outgrown(request):
                    tg.cancel_scope.cancel()
                    break

    def _outgrown(self, request: RequestJobs) -> bool:
        """Whether the budget free now takes a job that `request`'s could not: it grew, and the request's
        was smaller than the whole worker (a budget that holds the worker's size holds any job it runs)."""
        capacity = self._jobs.capacity
        cpus, memory_mb = self._jobs.budget(self._jobs.prefetch())
        asked_cpus, asked_memory = request.cpus or 0, request.memory_mb or 0
        if cpus > asked_cpus and asked_cpus < capacity.cpus:
            return True
        full_memory = capacity.memory_mb
        return full_memory is not None and (memory_mb or 0) > asked_memory and asked_memory < full_memory

    def _take(self, conn: Connection, jobs: list[LeasedJob]) -> None:
        """Jobs granted: held while this worker takes work, else handed back at once, unspent."""
        if not jobs or self._tg is None:
            return
        if self._desk.accepting:
            self._jobs.hold(jobs)
            return
        refs = [LeaseRef(job_id=j.job_id, lease=j.lease) for j in jobs]
        log.info("worker.late_grant_returned", jobs=[r.job_id for r in refs])
        self._tg.start_soon(self._return, conn, refs)

    def late_reply(self, conn: Connection, message: object) -> None:
        """A reply to a lease request this worker had given up (to ask with a larger budget, or to stop)."""
        if isinstance(message, JobsLeased):
            self._take(conn, message.jobs)

    def send_back_soon(self, refs: list[LeaseRef]) -> None:
        """send_back, in the background."""
        if refs and self._tg is not None:
            self._tg.start_soon(self.send_back, refs)

    async def send_back(self, refs: list[LeaseRef]) -> None:
        """Return these leases to the broker unfinished (their attempts not spent), if it is there."""
        if not refs:
            return
        conn = self._link.current
        if conn is None:
            log.warning("worker.hand_back_skipped", jobs=len(refs), why="broker unreachable; leases will expire")
            return
        await self._return(conn, refs)

    async def _return(self, conn: Connection, refs: list[LeaseRef]) -> None:
        try:
            with anyio.fail_after(RETURN_TIMEOUT_S):
                await conn.request(lambda rid: ReturnLeases(rid=rid, leases=refs))
            log.info("worker.handed_back", jobs=[r.job_id for r in refs])
        except (GriddError, TimeoutError) as exc:
            log.warning("worker.hand_back_failed", jobs=len(refs), error=str(exc))

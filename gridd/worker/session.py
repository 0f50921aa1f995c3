"""Session: the worker's connection to the broker, kept up with backoff, and the tasks that use it.

Rules:
- One connection at a time. Registering names every lease the worker still answers for (jobs held,
  results not acknowledged), so the broker re-attaches them after a reconnection; those it lost meanwhile
  are stopped. A refused or lost connection is tried again after a backoff (gridd.client.backoff).
- Given several brokers (`--broker a:7420,b:7420`), each connection goes to the first that answers; when
  it goes away, the next one is tried first (gridd.client.addresses), and the jobs held re-attach there.
- While connected, one task each: heartbeats (which renew the leases held), revocations pushed by the
  broker, the lease requests (gridd.worker.leasing), results and output (gridd.worker.delivery), and a
  report to the broker whenever the worker's state, or whether it takes work, changes (gridd.worker.desk).
"""

from __future__ import annotations

import anyio
import structlog

from gridd.client.backoff import Backoff
from gridd.client.connection import Connection, open_connection
from gridd.config import parse_addresses
from gridd.protocol.errors import ConnectionLost, GriddError, WorkerNameInUse
from gridd.protocol.messages import LeaseRef, RegisterWorker, RenewLeases, ReportWorkerState, RevokeLeases
from gridd.protocol.states import JobState
from gridd.worker.delivery import Delivery
from gridd.worker.desk import Desk
from gridd.worker.leasing import Leasing
from gridd.worker.link import BrokerLink
from gridd.worker.running import RunningJobs
from gridd.worker.settings import AgentSettings

log = structlog.get_logger()

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0


class Session:
    """Keeps the worker connected and runs its per-connection tasks (see the module's rules)."""

    def __init__(
        self,
        settings: AgentSettings,
        task_modules: list[str],
        link: BrokerLink,
        desk: Desk,
        jobs: RunningJobs,
        leasing: Leasing,
        delivery: Delivery,
    ) -> None:
        self._s = settings
        self._task_modules = task_modules
        self._link = link
        self._desk = desk
        self._jobs = jobs
        self._leasing = leasing
        self._delivery = delivery
        self._registered = False  # once registered, later registrations are reconnections
        parse_addresses(settings.broker)  # a malformed entry is a usage error at start, not a retry for ever
        self._broker_now: str | None = None  # the broker of the last connection

    async def keep_connected(self) -> None:
        """Connect, serve, and connect again after a backoff, until cancelled."""
        backoff = Backoff(BACKOFF_MIN_S, BACKOFF_MAX_S)
        s = self._s
        while True:
            try:
                async with open_connection(s.broker, s.token, role="worker", name=s.name, insecure=s.insecure) as conn:
                    backoff.reset()
                    await self._serve(conn)
            except* WorkerNameInUse as group:
                log.warning("worker.name_in_use", error=str(group.exceptions[0]))
            except* ConnectionLost as group:
                retry_in_s = round(backoff.next_delay_s, 2)
                log.warning("worker.disconnected", error=str(group.exceptions[0]), retry_in_s=retry_in_s)
            except* GriddError as group:
                log.error("worker.refused", error=str(group.exceptions[0]), retry_in_s=round(backoff.next_delay_s, 2))
            self._link.down()
            await backoff.wait()

    def _held_leases(self) -> list[LeaseRef]:
        """Leases this worker still answers for: jobs held (running or leased ahead) and results not yet
        acknowledged, so the broker keeps them current until each outcome is recorded."""
        return self._jobs.held_leases() + self._delivery.held_leases()

    async def _serve(self, conn: Connection) -> None:
        refs = self._held_leases()
        s, capacity, state = self._s, self._jobs.capacity, self._desk.state
        reply = await conn.request(
            lambda rid: RegisterWorker(
                rid=rid,
                restarted=not self._registered,
                host=s.host,
                slots=s.slots,
                queues=s.queues,
                tags=s.tags,
                running=refs,
                tasks=self._task_modules,
                state=state,
                cpus=capacity.cpus,
                memory_mb=capacity.memory_mb,
                instance=s.instance,
            )
        )
        if self._broker_now is not None and conn.address != self._broker_now:
            log.info("worker.broker_moved", **{"from": self._broker_now, "to": conn.address})
        self._broker_now = conn.address
        log.info("worker.connected", broker=conn.address, attached=len(refs) - len(reply.lost), lost=len(reply.lost))
        self._registered = True
        self._jobs.stop(reply.lost, why="lost while disconnected")
        conn.on_late_reply = lambda message: self._leasing.late_reply(conn, message)
        self._link.up(conn)  # calls waiting for a connection (a task's payload, a bundle) may go on
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._heartbeat, conn, conn.welcome.heartbeat_s)
            tg.start_soon(self._delivery.send_results, conn)
            tg.start_soon(self._leasing.take_work, conn)
            tg.start_soon(self._obey, conn)
            tg.start_soon(self._delivery.send_output, conn)
            tg.start_soon(self._report_state, conn, state)

    async def _heartbeat(self, conn: Connection, every_s: float) -> None:
        while True:
            await anyio.sleep(every_s)
            refs = self._held_leases()
            reply = await conn.request(lambda rid: RenewLeases(rid=rid, leases=refs))  # noqa: B023 - called at once
            self._jobs.stop(reply.lost, why="lease no longer current")

    async def _obey(self, conn: Connection) -> None:
        async for message in conn.pushes:
            if isinstance(message, RevokeLeases):
                self._jobs.stop(message.leases, why=JobState.CANCELLED.value)
        raise conn.closed_error()

    async def _report_state(self, conn: Connection, registered: str) -> None:
        """Tell the broker whenever this worker's state, or whether it wants jobs, changes."""
        sent = (registered, True)
        while True:
            now = (self._desk.state, self._desk.accepting)
            if now != sent:
                await conn.send(ReportWorkerState(state=now[0], accepting=now[1]))
                sent = now
            await self._desk.wait_changed()

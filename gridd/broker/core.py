"""The broker's use cases, assembled: the one object sessions, the reaper, maintenance and metrics use.

Each concern lives in its own module and is written once there; this module only builds them, wires them
together and names their calls. The parts, and the direction of their imports (each imports only those
below it):

    core           Broker: builds the parts; the names sessions call
    client_desk    submit, show, explain, control, wait, results, blobs, bundles
    schedules      periodic schedules: add, list, change, and the timer that fires their slots
    worker_desk    workers joining and leaving, their leases and results
    token_desk     role tokens: create, revoke, credential strings
    housekeeping   purge of finished jobs, idle queues' lanes
    ledger         committed transitions into counts, log lines, events, waiters, the dispatcher's wake-up
    promoter       scheduled jobs (submit --at/--in) queued when their start time comes
    settings       BrokerSettings

Rule: a reply, an event or a wake-up is only ever produced after the store call that made it true has
returned (committed). Sessions translate frames into these calls; nothing here knows about sockets.
"""

from __future__ import annotations

from collections import Counter

from gridd.broker.client_desk import ClientDesk
from gridd.broker.events import EventHub
from gridd.broker.finishes import FinishWatch
from gridd.broker.gangs import GangDispatch
from gridd.broker.housekeeping import Housekeeping
from gridd.broker.ledger import Ledger
from gridd.broker.matching import LaneBook
from gridd.broker.observe import Observer
from gridd.broker.outputs import OutputRelay
from gridd.broker.promoter import Promoter
from gridd.broker.scheduler import Dispatcher
from gridd.broker.schedules import Schedules
from gridd.broker.settings import BrokerSettings
from gridd.broker.store import Store
from gridd.broker.store.interface import Announced
from gridd.broker.token_desk import TokenDesk
from gridd.broker.token_sessions import TokenSessions
from gridd.broker.worker_desk import WorkerDesk
from gridd.broker.workers import WorkerRegistry
from gridd.clock import Clock

__all__ = ["Broker", "BrokerSettings"]


class Broker:
    """Jobs, leases and workers as the sessions and the reaper use them."""

    def __init__(
        self,
        store: Store,
        hub: EventHub,
        clock: Clock,
        settings: BrokerSettings,
        counts: dict[str, dict[str, int]],
        *,
        ca_digest: str | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.store = store
        self.hub = hub
        self.clock = clock
        self.settings = settings
        self.watch = FinishWatch()
        self.outputs = OutputRelay(settings.max_output_bytes)
        self.workers = WorkerRegistry()
        self.lanes = LaneBook()  # filled from the store at start (app.py), then by each submit
        self.sessions = TokenSessions()  # the open connections of each role token
        self.ca_digest = ca_digest  # sha256 of the broker CA (gridd/broker/tls.py); credentials pin it
        self.port = 0  # set once listening
        self.metrics_port: int | None = None  # that of --metrics, once it listens (None: no metrics)
        # The dispatcher reports its leases to the ledger, and the ledger wakes the dispatcher: the dispatcher
        # is made first and reaches the ledger through this lambda, which first runs when it leases (once
        # started, after this constructor).
        self.dispatcher = Dispatcher(
            store,
            clock,
            settings.lease_ttl_ms,
            on_leased=lambda worker, jobs: self._ledger.leased(worker, jobs),
            queued=lambda queue: self._ledger.queued(queue),
            gangs=GangDispatch(store, self.workers, settings.lease_ttl_ms, clock),
        )
        # Scheduled jobs queued at their time (started by app.py); it reaches the ledger as the dispatcher does.
        self.promoter = Promoter(
            store, clock, on_promoted=lambda changed: self._ledger.record(changed, kind="job.due", log_each=False)
        )
        # queue -> state -> jobs: read from the store once at start, then kept by the ledger alone.
        self.counts = counts
        self._ledger = ledger = Ledger(
            counts, hub, self.watch, self.workers, self.dispatcher, clock, observer or Observer(), self.promoter
        )
        housekeeping = Housekeeping(store, clock, settings, self.lanes, ledger)
        self._clients = clients = ClientDesk(
            store, clock, settings, self.workers, self.lanes, self.watch, ledger, housekeeping
        )
        self._worker_desk = desk = WorkerDesk(
            store, clock, settings, self.workers, self.lanes, self.dispatcher, ledger, hub
        )
        tokens = TokenDesk(store, clock, self.sessions, ca_digest)
        # Periodic schedules, and their timer (started by app.py): each slot is submitted as a job.
        self.schedules = Schedules(store, clock, settings, self.lanes, ledger, housekeeping)

        # The calls sessions (and the reaper, maintenance, tests) make, each written once in its part:
        self.submit = clients.submit
        self.show = clients.show
        self.explain = clients.explain
        self.control = clients.control
        self.wait = clients.wait
        self.results = clients.results
        self.put_blob = clients.put_blob
        self.push_bundle = clients.push_bundle
        self.register_worker = desk.register_worker
        self.set_worker_state = desk.set_worker_state
        self.unregister_worker = desk.unregister_worker
        self.lease = desk.lease
        self.renew = desk.renew
        self.complete = desk.complete
        self.return_leases = desk.return_leases
        self.expire_leases = desk.expire_leases
        self.credential_for = tokens.credential_for
        self.create_token = tokens.create_token
        self.revoke_token = tokens.revoke_token
        self.purge = housekeeping.purge
        self.drop_idle_lanes = housekeeping.drop_idle_lanes
        self.forget_keys = housekeeping.forget_keys
        self.status = ledger.status
        self.snapshot = ledger.snapshot
        self.worker_views = self.workers.views

    async def from_peer(self, announced: Announced) -> None:
        """What another broker on the same store committed. New jobs may be in lanes this broker has not seen
        (a task module, a --require): those are read first, so the dispatcher the ledger wakes can lease them.
        A token revoked there has its connections here closed too."""
        for token_id, name in announced.revoked:
            self.sessions.close_token(token_id, f"token {name!r} was revoked")
        if any(t.previous is None for t in announced.changed):
            self.lanes.add(await self.store.known_lanes())
        self._ledger.from_peer(announced)

    async def recount(self) -> None:
        """Read the jobs' counts from the store afresh (another broker's changes may have been missed)."""
        self._ledger.recount(await self.store.count_by_queue())

    # Since start, for metrics (read at scrape time, gridd/broker/metrics.py) and tests.

    @property
    def submitted(self) -> int:
        """Jobs submitted."""
        return self._clients.submitted

    @property
    def attempts_ended(self) -> Counter[str]:
        """Attempts ended, by what became of their job (succeeded, failed, requeued, cancelled)."""
        return self._ledger.attempts_ended

    @property
    def stale_completions(self) -> int:
        """Results refused: for a lease no longer current."""
        return self._worker_desk.stale_completions

    @property
    def foreign_completions(self) -> int:
        """Results refused: for a lease granted to another worker."""
        return self._worker_desk.foreign_completions

"""The dashboard: workers, jobs per queue and state, throughput, and the jobs table, kept live by events.

Rule: the feed posts its messages here; the handlers below are the only place the dashboard's widgets
change. The screen owns the plain models (counts, workers, throughput) and hands them to widgets.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer

from gridd.protocol.errors import ConnectionLost, GriddError
from gridd.tui.link import BrokerLink
from gridd.tui.messages import Connected, Disconnected, EventsArrived, WorkersLoaded
from gridd.tui.model.counts import CountBook
from gridd.tui.model.throughput import Throughput
from gridd.tui.model.workers import WorkerBoard
from gridd.tui.screens.job_detail import JobDetailScreen
from gridd.tui.widgets.connection_bar import ConnectionBar
from gridd.tui.widgets.jobs_table import JobsTable
from gridd.tui.widgets.queue_counts import QueueCounts
from gridd.tui.widgets.throughput_panel import ThroughputPanel
from gridd.tui.widgets.workers_table import WorkersTable

WORKERS_REFRESH_S = 10.0  # heartbeats make no events: re-read the (small) worker list this often for "seen"
RESYNC_MIN_S = 5.0  # at most one fresh snapshot this often when counts could not be kept exact


class DashboardScreen(Screen[None]):
    """The main screen. `resubscribe` asks the app for a fresh snapshot (a new subscription)."""

    BINDINGS = [
        Binding("s", "cycle_state", "State"),
        Binding("o", "cycle_queue", "Queue"),
        Binding("g", "newest", "Top"),
    ]

    def __init__(self, link: BrokerLink, resubscribe: Callable[[], object], *, window_s: int = 180) -> None:
        super().__init__(id="dashboard")
        self._link = link
        self._resubscribe = resubscribe
        self.counts = CountBook()
        self.board = WorkerBoard()
        self.throughput = Throughput(window_s)
        self._window_s = window_s
        self._connected = False
        self._last_sync = 0.0
        self._last_workers_read = 0.0

    def compose(self) -> ComposeResult:
        yield ConnectionBar(id="status")
        with Horizontal(id="top"):
            yield WorkersTable(id="workers")
            with Vertical(id="side"):
                yield QueueCounts(id="queues")
                yield ThroughputPanel(window_s=self._window_s, id="throughput")
        yield JobsTable(self._link, id="jobs")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)
        self.query_one(JobsTable).focus()

    def selected_job_id(self) -> str | None:
        """The job under the jobs table's cursor."""
        return self.query_one(JobsTable).selected_job_id()

    # ---- from the feed ----------------------------------------------------------------------------------

    @on(Connected)
    def _connected_to(self, message: Connected) -> None:
        self._connected = True
        self.remove_class("-offline")
        self._last_sync = time.monotonic()
        self._last_workers_read = self._last_sync
        self.board.reset(message.snapshot.workers)
        self.counts.reset(message.snapshot.queues, self.board.running_jobs())
        self.query_one(ConnectionBar).show_connected(message.address)
        self._show_counts()
        self.query_one(WorkersTable).show(self.board)
        self.query_one(JobsTable).reload()  # events were missed while away: read the rows again

    @on(Disconnected)
    def _disconnected(self, message: Disconnected) -> None:
        self._connected = False
        self.add_class("-offline")
        self.query_one(ConnectionBar).show_reconnecting(message.address, message.reason, message.retry_in_s)

    @on(EventsArrived)
    def _events(self, message: EventsArrived) -> None:
        workers_changed = False
        for event in message.events:
            self.counts.apply(event)
            workers_changed |= self.board.apply(event)
            self.throughput.record(event)
        self._show_counts()
        if workers_changed:
            self.query_one(WorkersTable).show(self.board)
        if self.board.needs_refresh:
            self.board.needs_refresh = False
            self._read_workers()
        self.query_one(JobsTable).apply_events(message.events)
        screen = self.app.screen
        if isinstance(screen, JobDetailScreen) and any(e.job_id == screen.job_id for e in message.events):
            screen.reload()

    @on(WorkersLoaded)
    def _workers_loaded(self, message: WorkersLoaded) -> None:
        self.board.reset(message.workers)
        self.query_one(WorkersTable).show(self.board)
        self._show_counts()

    def _show_counts(self) -> None:
        totals = self.counts.totals()
        self.query_one(QueueCounts).show(self.counts.by_queue(), totals, self.counts.exact)
        self.query_one(ConnectionBar).show_totals(len(self.board.rows), self.board.slots(), totals)

    def _tick(self) -> None:
        """Once a second: move the sparkline and ages along; resync or re-read workers when due."""
        self.query_one(ThroughputPanel).show(self.throughput.series(), self.throughput.rate())
        self.query_one(WorkersTable).show(self.board)
        now = time.monotonic()
        if not self._connected:
            return
        if not self.counts.exact and now - self._last_sync >= RESYNC_MIN_S:
            self._last_sync = now
            self._resubscribe()
        elif now - self._last_workers_read >= WORKERS_REFRESH_S:
            self._last_workers_read = now
            self._read_workers()

    @work(exclusive=True, group="workers", exit_on_error=False)
    async def _read_workers(self) -> None:
        try:
            workers = await self._link.require().workers()
        except ConnectionLost:
            return
        except GriddError as exc:
            self.notify(str(exc), severity="error")
            return
        self.post_message(WorkersLoaded(workers))

    # ---- keys -------------------------------------------------------------------------------------------

    @on(DataTable.RowSelected, "#jobs")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.app.push_screen(JobDetailScreen(self._link, str(event.row_key.value)))

    def action_cycle_state(self) -> None:
        """Show the next state only (all → queued → running → … → all)."""
        jobs = self.query_one(JobsTable)
        jobs.set_filter(jobs.filter.next_state())

    def action_cycle_queue(self) -> None:
        """Show the next queue only (all → each known queue → all)."""
        jobs = self.query_one(JobsTable)
        jobs.set_filter(jobs.filter.next_queue(self.counts.queues()))

    def action_newest(self) -> None:
        """Go back to the newest jobs."""
        jobs = self.query_one(JobsTable)
        jobs.set_filter(jobs.filter)

"""The jobs table: a window on the newest jobs that match the filter, paged, and kept live by events.

Rule: it never loads every job. It loads one page (newest first), more pages as the cursor nears the
bottom (`jobs(limit, before=oldest id shown)`), and applies events only to the rows it shows. A new
job that matches the filter (or a job that enters a state filter) makes it re-read the newest page
once, coalesced: one such read at a time, and one more afterwards if events asked for it meanwhile.
Events carry no command, so new rows come from that read. Rows are keyed by job id, columns by name.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from gridd.protocol.errors import ConnectionLost, GriddError
from gridd.protocol.messages import Event, JobView
from gridd.protocol.states import JobState
from gridd.tui.formatting import clock_time, command_line, exit_text, id_order
from gridd.tui.link import BrokerLink
from gridd.tui.messages import JobsLoaded
from gridd.tui.model.job_filter import JobFilter
from gridd.tui.widgets.cells import cell

COLUMNS = (
    ("id", "id"),
    ("state", "state"),
    ("queue", "queue"),
    ("owner", "owner"),
    ("pri", "priority"),
    ("try", "attempts"),
    ("worker", "worker"),
    ("exit", "exit"),
    ("submitted", "submitted"),
    ("command", "command"),
)


def job_cells(job: JobView) -> list[str]:
    """A row of the table for one job, in COLUMNS order."""
    return [
        job.id,
        job.state,
        job.queue,
        job.owner or "-",
        str(job.priority),
        f"{job.attempts}/{job.max_attempts}",
        job.worker or "-",
        exit_text(job.exit_code),
        clock_time(job.submitted_ms),
        command_line(job.argv),
    ]


class JobsTable(DataTable[Text]):
    """The newest jobs matching `filter`; Enter on a row selects it (the screen opens its detail)."""

    MAX_ROWS = 2000  # a burst of new jobs trims the oldest rows beyond this
    BINDINGS = [  # rows matter here, not columns: Home/End go to the first/last row
        Binding("enter", "select_cursor", "Detail"),
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]

    def __init__(self, link: BrokerLink, *, page: int = 100, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._link = link
        self.page = page
        self.filter = JobFilter()
        self.has_more = False
        self._generation = 0
        self._busy: set[str] = set()  # modes with a read in flight: "top", "older"
        self._top_again = False
        self._update_title()

    def on_mount(self) -> None:
        for label, key in COLUMNS:
            self.add_column(label, key=key)

    # ---- what the screen asks ---------------------------------------------------------------------------

    def selected_job_id(self) -> str | None:
        """The job under the cursor, if any."""
        if not self.row_count:
            return None
        row = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key
        return None if row.value is None else str(row.value)

    def set_filter(self, job_filter: JobFilter) -> None:
        """Show other jobs: start again from the newest page."""
        self.filter = job_filter
        self.clear()
        self.has_more = False
        self._update_title()
        self.reload()

    def reload(self) -> None:
        """Read again the rows shown (after a new snapshot), at least one page, at most MAX_ROWS."""
        self._generation += 1
        self._busy.clear()
        self._top_again = False
        limit = max(self.page, min(self.row_count, self.MAX_ROWS))
        self._fetch(self._generation, "reload", limit, None)

    def request_top(self) -> None:
        """Re-read the newest page soon: once now, or once more after the read in flight."""
        if "top" in self._busy:
            self._top_again = True
            return
        self._busy.add("top")
        self._fetch(self._generation, "top", self.page, None)

    def request_older(self) -> None:
        """Load the page after the oldest row shown, unless one is loading or there is no more."""
        if not self.has_more or "older" in self._busy or not self.row_count:
            return
        self._busy.add("older")
        oldest = self.coordinate_to_cell_key(Coordinate(self.row_count - 1, 0)).row_key.value
        self._fetch(self._generation, "older", self.page, str(oldest))

    def apply_events(self, events: Iterable[Event]) -> None:
        """Update shown rows in place; drop rows that left the filter; ask for new ones."""
        wanted = False
        for event in events:
            job_id, state = event.job_id, event.state
            if event.kind == "job.purged" and job_id is not None and job_id in self.rows:
                self.remove_row(job_id)
                continue
            if job_id is None or state is None:
                continue
            if job_id not in self.rows:
                # A new job, or (with a state filter) a job entering that state: read the newest page.
                wanted |= self.filter.matches(state, event.queue) and (
                    event.kind == "job.submitted" or self.filter.state is not None
                )
            elif not self.filter.matches(state, event.queue):
                self.remove_row(job_id)
            else:
                self._update_row(job_id, event)
        if wanted:
            self.request_top()

    def _update_row(self, job_id: str, event: Event) -> None:
        state = event.state or ""
        values = {"state": state}
        if event.attempt is not None:
            most = str(self.get_cell(job_id, "attempts")).partition("/")[2] or "?"
            values["attempts"] = f"{event.attempt}/{most}"
        if state == JobState.RUNNING or event.worker is not None:
            values["worker"] = event.worker or "-"
        if state != JobState.RUNNING:
            values["exit"] = exit_text(event.exit_code)
        for column, value in values.items():
            if self.get_cell(job_id, column) != (new := cell(value)):
                self.update_cell(job_id, column, new, update_width=True)

    # ---- reading pages --------------------------------------------------------------------------------

    @work(group="jobs-page", exit_on_error=False)
    async def _fetch(self, generation: int, mode: str, limit: int, before: str | None) -> None:
        jobs: list[JobView] | None = None
        try:
            client = self._link.require()
            jobs = await client.jobs(state=self.filter.state, queue=self.filter.queue, limit=limit, before=before)
        except ConnectionLost:
            pass  # the status bar already says so; the next snapshot reloads the table
        except GriddError as exc:
            self.notify(str(exc), severity="error")
        self.post_message(JobsLoaded(generation, mode, jobs if jobs is not None else [], limit, ok=jobs is not None))

    @on(JobsLoaded)
    def _loaded(self, message: JobsLoaded) -> None:
        message.stop()
        self._busy.discard(message.mode)
        if message.generation != self._generation or not message.ok:
            return
        if message.mode == "older":
            for job in message.jobs:
                if job.id not in self.rows:
                    self.add_row(*map(cell, job_cells(job)), key=job.id)
            self.has_more = len(message.jobs) >= message.limit
        elif message.mode == "reload":
            self._rebuild([(job.id, job_cells(job)) for job in message.jobs])
            self.has_more = len(message.jobs) >= message.limit
        else:
            self._merge_top(message.jobs, message.limit)
            if self._top_again:
                self._top_again = False
                self.request_top()
        self._update_title()

    def _merge_top(self, jobs: list[JobView], limit: int) -> None:
        """Fold the newest page into the rows shown, keeping them one unbroken run of the newest jobs."""
        fresh = [(job.id, job_cells(job)) for job in jobs]
        full = len(jobs) >= limit
        floor = id_order(jobs[-1].id) if full else None  # the page holds every matching job newer than this
        shown = [str(key.value) for key in self.rows]
        if full and floor is not None and not any(id_order(k) >= floor for k in shown):
            self._rebuild(fresh)  # the page does not reach the rows shown: a gap, so start from it
            self.has_more = True
            return
        older = [(k, [str(c) for c in self.get_row(k)]) for k in shown if floor is not None and id_order(k) < floor]
        merged = fresh + older
        if [k for k, _ in merged] == shown:
            for key, cells in fresh:
                for (_, column), value in zip(COLUMNS, cells, strict=True):
                    if self.get_cell(key, column) != (new := cell(value)):
                        self.update_cell(key, column, new, update_width=True)
            return
        if len(merged) > max(self.MAX_ROWS, len(shown)):
            merged = merged[: max(self.MAX_ROWS, len(shown))]
            self.has_more = True
        self._rebuild(merged)

    def _rebuild(self, rows: list[tuple[str, list[str]]]) -> None:
        """Replace every row. A cursor on the top row stays on top (following the newest jobs, as
        `tail -f` would); elsewhere it stays on the same job while that job is still shown."""
        selected = self.selected_job_id() if self.cursor_row > 0 else None
        self.clear()
        for key, cells in rows:
            self.add_row(*map(cell, cells), key=key)
        if selected is not None and selected in self.rows:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    def _update_title(self) -> None:
        more = "+" if self.has_more else ""
        self.border_title = f"Jobs · {self.filter.label()} · {self.row_count}{more} shown"

    @on(DataTable.RowHighlighted)
    def _near_bottom(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row >= self.row_count - 5:
            self.request_older()

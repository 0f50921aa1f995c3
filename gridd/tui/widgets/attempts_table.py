"""A job's finished attempts: worker, times, exit status, outcome and accounting (wall, CPU user+system,
max RSS; "-" where not measured) of each."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from gridd.protocol.messages import AttemptView
from gridd.tui import formatting
from gridd.tui.formatting import clock_time, exit_text
from gridd.tui.widgets.cells import cell

COLUMNS = (
    ("#", "attempt"),
    ("worker", "worker"),
    ("started", "started"),
    ("ended", "ended"),
    ("exit", "exit"),
    ("outcome", "outcome"),
    ("wall", "wall"),
    ("cpu", "cpu"),
    ("maxrss", "maxrss"),
)


class AttemptsTable(DataTable[Text]):
    """One row per attempt, keyed by position from "1" (attempt numbers start again after a retry)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="none", show_cursor=False)
        self.border_title = "Attempts"

    def on_mount(self) -> None:
        for label, key in COLUMNS:
            self.add_column(label, key=key)

    def show(self, attempts: Sequence[AttemptView]) -> None:
        """Replace the rows with these attempts."""
        self.clear()
        for position, a in enumerate(attempts, start=1):
            cells = [
                str(a.attempt),
                a.worker or "-",
                clock_time(a.started_ms),
                clock_time(a.ended_ms),
                exit_text(a.exit_code),
                a.outcome,
                formatting.duration(None if a.wall_ms is None else a.wall_ms / 1000),
                formatting.duration(formatting.cpu_s(a)),
                formatting.kib(a.max_rss_kb),
            ]
            self.add_row(*map(cell, cells), key=str(position))
        self.border_title = f"Attempts ({len(attempts)} finished)"

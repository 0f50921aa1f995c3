"""Jobs per queue and state, as a small table keyed by queue name and state.

Rule: to fit 80 columns, a state gets a column only while some queue has jobs in it (queued and
running always have one); the title says so when counts are being resynchronised.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.widgets import DataTable

from gridd.protocol.states import JobState
from gridd.tui.model.counts import STATES
from gridd.tui.widgets.cells import cell

# A state's column heading: shortened where its name is long; otherwise the name itself.
SHORT: dict[str, str] = {
    JobState.WAITING: "wait",
    JobState.RUNNING: "run",
    JobState.SUCCEEDED: "ok",
    JobState.FAILED: "fail",
    JobState.CANCELLED: "cncl",
    JobState.SCHEDULED: "sched",
}
ALWAYS = (JobState.QUEUED, JobState.RUNNING)


class QueueCounts(DataTable[Text]):
    """Rows are queues (plus "(all)" when there are several), columns are states."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="none", show_cursor=False)
        self.border_title = "Queues"
        self._states: list[str] = []

    def show(self, by_queue: Mapping[str, Mapping[str, int]], totals: Mapping[str, int], exact: bool) -> None:
        """Make the rows and columns match the counts."""
        states = [s for s in STATES if s in ALWAYS or totals.get(s, 0)]
        rows = {q: [q, *(str(by_state.get(s, 0)) for s in states)] for q, by_state in by_queue.items()}
        if len(rows) > 1:
            rows["(all)"] = ["(all)", *(str(totals.get(s, 0)) for s in states)]
        if states != self._states or [str(key.value) for key in self.rows] != list(rows):
            self._rebuild(states, rows)
        else:
            for key, cells in rows.items():
                for state, value in zip(states, cells[1:], strict=True):
                    if self.get_cell(key, state) != (new := cell(value)):
                        self.update_cell(key, state, new, update_width=True)
        self.border_title = "Queues" if exact else "Queues (resyncing…)"

    def _rebuild(self, states: list[str], rows: Mapping[str, list[str]]) -> None:
        self.clear(columns=True)
        self._states = states
        self.add_column("queue", key="queue")
        for state in states:
            self.add_column(SHORT.get(state, state), key=state)
        for key, cells in rows.items():
            self.add_row(*map(cell, cells), key=key)

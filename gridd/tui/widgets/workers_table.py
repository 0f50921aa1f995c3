"""The workers table: one row per connected worker, keyed by name."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from gridd.tui.formatting import age
from gridd.tui.model.workers import WorkerBoard, WorkerRow
from gridd.tui.widgets.cells import cell

# Short columns first, so that at 80 columns the long job list is what scrolls out of view.
COLUMNS = (
    ("name", "name"),
    ("state", "state"),
    ("slots", "slots"),
    ("seen", "seen"),
    ("jobs", "jobs"),
    ("host", "host"),
)


class WorkersTable(DataTable[Text]):
    """Renders a WorkerBoard: name, host, slots used/total, running job ids, last seen, idle/busy."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", show_cursor=False)
        self.border_title = "Workers"

    def on_mount(self) -> None:
        for label, key in COLUMNS:
            self.add_column(label, key=key)

    def show(self, board: WorkerBoard) -> None:
        """Make the rows match the board (update in place when the same workers are there)."""
        names = sorted(board.rows)
        if [str(key.value) for key in self.rows] != names:
            self.clear()
            for name in names:
                self.add_row(*map(cell, self._cells(board.rows[name])), key=name)
        else:
            for name in names:
                for (_, column), value in zip(COLUMNS, self._cells(board.rows[name]), strict=True):
                    if self.get_cell(name, column) != (new := cell(value)):
                        self.update_cell(name, column, new, update_width=True)
        used, total = board.slots()
        self.border_title = f"Workers {len(names)} · slots {used}/{total}"

    @staticmethod
    def _cells(row: WorkerRow) -> list[str]:
        jobs = row.sorted_jobs()
        shown = ",".join(jobs[:4]) + (f" +{len(jobs) - 4}" if len(jobs) > 4 else "")  # keeps 80 columns usable
        slots = f"{len(row.jobs)}/{row.slots}" if row.slots else f"{len(row.jobs)}/?"
        return [row.name, row.state, slots, age(row.last_seen_ms), shown or "-", row.host]

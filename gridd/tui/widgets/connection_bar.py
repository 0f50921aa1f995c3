"""The one-line status bar: connected or reconnecting, workers, slots and totals by state."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.widgets import Static

from gridd.protocol.states import JobState

ACTIVE = (JobState.QUEUED, JobState.RUNNING)  # always shown; other states only when some job is in them


class ConnectionBar(Static):
    """Shows where the dashboard is connected, or that it is reconnecting and why."""

    DEFAULT_CSS = """
    ConnectionBar { height: 1; background: $panel; padding: 0 1; }
    ConnectionBar.-reconnecting { background: $error 40%; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("connecting…", id=id, markup=False)
        self.status = "connecting"
        self._where = ""

    def show_connected(self, address: str) -> None:
        """Connected to the broker at `address`."""
        self.status = "connected"
        self._where = address
        self.remove_class("-reconnecting")

    def show_reconnecting(self, address: str, reason: str, retry_in_s: float) -> None:
        """Lost the broker: say why and when the next attempt is."""
        self.status = "reconnecting"
        self.add_class("-reconnecting")
        self.update(Text(f"◌ reconnecting to {address} in {retry_in_s:.1f}s — {reason}"))

    def show_totals(self, workers: int, slots: tuple[int, int], totals: Mapping[str, int]) -> None:
        """Refresh the summary shown while connected."""
        if self.status != "connected":
            return
        used, all_slots = slots
        states = " · ".join(f"{n} {state}" for state, n in totals.items() if n or state in ACTIVE)
        self.update(Text(f"● {self._where} │ workers {workers} │ slots {used}/{all_slots} │ {states}"))

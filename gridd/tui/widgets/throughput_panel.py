"""Finished jobs per second: a sparkline over the last minutes and the recent rate."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


class ThroughputPanel(Vertical):
    """A label with the rate and a sparkline (one bar may cover several seconds: the mean is shown)."""

    DEFAULT_CSS = """
    ThroughputPanel { height: 3; }
    ThroughputPanel > Label { height: 1; }
    ThroughputPanel > Sparkline { height: 1; }
    """

    def __init__(self, *, window_s: int, id: str | None = None) -> None:
        super().__init__(id=id)
        self._window_s = window_s
        self.border_title = "Finished/s"

    def compose(self) -> ComposeResult:
        yield Label("", id="rate")
        yield Sparkline([], summary_function=_mean, id="spark")

    def show(self, series: list[float], rate: float) -> None:
        """New per-second counts (oldest first) and the recent mean rate."""
        self.query_one("#spark", Sparkline).data = series
        peak = max(series, default=0.0)
        minutes = self._window_s // 60
        self.query_one("#rate", Label).update(f"{rate:.1f}/s now · peak {peak:.0f}/s · last {minutes} min")

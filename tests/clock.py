"""A clock that only moves when a test moves it, for lease deadlines and retry delays."""

from __future__ import annotations

START_MS = 1_700_000_000_000  # a fixed, realistic epoch time in ms


class FakeClock:
    """Implements gridd.clock.Clock: now_ms() returns a time that changes only through advance()."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, seconds: float) -> int:
        """Move time forward by `seconds` (may be fractional); returns the new now_ms()."""
        if seconds < 0:
            raise ValueError("time never goes backwards")
        self._now_ms += round(seconds * 1000)
        return self._now_ms

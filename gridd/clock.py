"""Time as an injected dependency: persisted deadlines are epoch milliseconds from a Clock."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Where components read the time, so that tests can move it."""

    def now_ms(self) -> int:
        """Milliseconds since the epoch."""
        ...


class SystemClock:
    """The real wall clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

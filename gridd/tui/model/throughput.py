"""Jobs finished per second, over the last few minutes, counted from events as they arrive.

Rule: seconds are counted on this machine's clock, at the moment each event arrives (the broker's
clock may differ from ours; on a live stream an event arrives within milliseconds of its `ts_ms`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from gridd.protocol.messages import Event

FINISH_KINDS = frozenset({"job.succeeded", "job.failed", "job.cancelled"})


class Throughput:
    """A ring of per-second counts of finished jobs."""

    def __init__(self, window_s: int = 180, now: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._now = now
        self._buckets: deque[int] = deque([0] * window_s, maxlen=window_s)
        self._second = int(now())

    def _roll(self) -> None:
        second = int(self._now())
        for _ in range(min(second - self._second, self.window_s)):
            self._buckets.append(0)
        self._second = max(second, self._second)

    def record(self, event: Event) -> None:
        """Count the event if it is a job finishing."""
        if event.kind in FINISH_KINDS:
            self._roll()
            self._buckets[-1] += 1

    def series(self) -> list[float]:
        """Finished jobs in each second of the window, oldest first (the current second last)."""
        self._roll()
        return [float(n) for n in self._buckets]

    def rate(self, over_s: int = 10) -> float:
        """Mean jobs finished per second over the last `over_s` whole seconds."""
        self._roll()
        recent = list(self._buckets)[-over_s - 1 : -1]
        return sum(recent) / max(1, len(recent))

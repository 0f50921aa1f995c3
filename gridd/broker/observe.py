"""What the broker's hot paths tell its metrics: one call per batch or per lease call, never a store trip.

Rule: this base does nothing (a broker without --metrics pays one method call per batch); the
Prometheus side (gridd/broker/metrics.py) overrides it. Callers call it only after the commit that made
what they report true, and may call it from the database thread (prometheus_client is thread-safe).
"""

from __future__ import annotations

from collections.abc import Sequence


class Observer:
    """Receives the figures only a hot path knows; everything else is read at scrape time."""

    def committed(self, calls: int, seconds: float, durable: bool) -> None:
        """One group commit ran `calls` store calls in `seconds`: BEGIN to COMMIT, and for a durable one on to
        the end of the fsync that covered it."""

    def synced(self, seconds: float) -> None:
        """One fsync of the -wal file took `seconds`; it made every durable batch committed before it durable."""

    def leased(self, waits_ms: Sequence[int]) -> None:
        """Jobs leased for the first time, each after waiting this long since it was submitted."""

    def attempts_ended(self, ran_ms: Sequence[int]) -> None:
        """Attempts whose results were recorded, each this long after its lease began."""

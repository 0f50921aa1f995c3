"""How an attempt's accounting reads to a person (`gridd show`, the TUI). Pure functions."""

from __future__ import annotations

from gridd.protocol.messages import AttemptView


def cpu_s(a: AttemptView) -> float | None:
    """User plus system CPU of an attempt, None if it was not measured."""
    if a.cpu_user_s is None or a.cpu_system_s is None:
        return None
    return a.cpu_user_s + a.cpu_system_s


def duration(seconds: float | None) -> str:
    """1.23s, 4m05s, 2h03m; "-" when not measured."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def kib(value: int | None) -> str:
    """A size in KiB (rusage's unit) as a person reads it; "-" when not measured."""
    if value is None:
        return "-"
    if value < 1024:
        return f"{value}K"
    if value < 1024 * 1024:
        return f"{value / 1024:.1f}M"
    return f"{value / 1024 / 1024:.2f}G"

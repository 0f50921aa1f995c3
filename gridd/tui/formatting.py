"""How the dashboard writes times, commands and output tails. Pure functions, no Textual; text from
the grid is made printable (gridd.printable)."""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence

from gridd.printable import printable, printable_lines
from gridd.protocol.records import AttemptView

TAIL_LINES = 40
TAIL_BYTES = 16_384


def age(epoch_ms: int | None, now_s: float | None = None) -> str:
    """How long ago, short: "now", "12s", "5m", "3h", "2d"; "-" when unknown."""
    if not epoch_ms:
        return "-"
    seconds = max(0, int((time.time() if now_s is None else now_s) - epoch_ms / 1000))
    if seconds < 2:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def clock_time(epoch_ms: int | None) -> str:
    """Local wall-clock time of day, or "-"."""
    if not epoch_ms:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(epoch_ms / 1000))


def command_line(argv: Sequence[str], width: int = 200) -> str:
    """The command as a shell would show it, cut to `width` characters."""
    text = printable(shlex.join(argv))
    return text if len(text) <= width else text[: width - 1] + "…"


def tail(data: bytes, truncated: bool = False) -> str:
    """The last lines of captured output, decoded for display."""
    cut = len(data) > TAIL_BYTES
    text = printable_lines(data[-TAIL_BYTES:].decode("utf-8", errors="replace"))
    lines = text.splitlines()
    if len(lines) > TAIL_LINES:
        lines, cut = lines[-TAIL_LINES:], True
    head = "… (earlier output not shown)\n" if cut or truncated else ""
    return head + "\n".join(lines) if lines else "(empty)"


def exit_text(exit_code: int | None) -> str:
    """An exit status for a table cell."""
    return "-" if exit_code is None else str(exit_code)


def id_order(job_id: str) -> tuple[int, str]:
    """Sort key for job ids: numeric ids compare by length first, then text."""
    return (len(job_id), job_id)


# An attempt's accounting, as `gridd show` and the job detail write it.


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

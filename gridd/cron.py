"""Cron expressions: when a periodic schedule's slots fall, in its time zone (gridd/broker/schedules.py).

The expressions are cron's five fields (minute hour day-of-month month day-of-week: lists, ranges,
steps, `*`, names like MON and JAN, and Vixie's rule that when both day fields are restricted either one
matches), or @hourly, @daily (@midnight), @weekly, @monthly, @yearly (@annually). They are evaluated by
cronsim (the evaluator of healthchecks.io), which matches Debian's cron, its handling of DST included:
- a slot in an hour the clocks skip (spring forward) fires once, at the first valid time after the skip;
- a slot of a fixed time (fixed minute and hour) in an hour that repeats (fall back) fires once, in its
  first pass; an expression that fires several times an hour ("*/15 * * * *") keeps firing through the
  repeated hour, as the real clock runs.
A slot is an instant (epoch ms, UTC), so each fires once whatever the clocks do.

Pure: no clock, no I/O but the time zone database (stdlib zoneinfo, or the tzdata package where the
system has none).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
CATCH_UP = ("none", "last", "all")
MAX_CATCH_UP = 1000  # --catch-up all fires at most this many missed slots, the latest ones
# --catch-up none: a slot found this late is still "now" (the timer woke a little late), not missed.
ON_TIME_MS = 60_000


class CronError(ValueError):
    """An expression or time zone that cannot be used; its message is one line for a person."""


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed expression in a time zone; slots are epoch milliseconds."""

    expr: str  # as given (an alias stays an alias)
    fields: str  # the five fields it means
    tz: str
    zone: ZoneInfo

    def next_after(self, ms: int) -> int | None:
        """The first slot strictly after `ms`; None if none falls within cronsim's horizon (50 years)."""
        return next(self._slots(ms, reverse=False), None)

    def due(self, first_ms: int, now_ms: int, catch_up: str) -> list[int]:
        """The slots to fire now, oldest first, of those from `first_ms` (the schedule's next slot, due)
        to `now_ms`: all of them (at most MAX_CATCH_UP, the latest), the latest only, or (none) the latest
        only if it is on time (ON_TIME_MS), i.e. not missed."""
        found: list[int] = []
        wanted = MAX_CATCH_UP if catch_up == "all" else 1
        for slot in self._slots(now_ms + 1, reverse=True):  # reverse: strictly before, so now itself counts
            if slot < first_ms or len(found) >= wanted:
                break
            found.append(slot)
        if catch_up == "none":
            found = [s for s in found if now_ms - s <= ON_TIME_MS]
        return found[::-1]

    def _slots(self, ms: int, *, reverse: bool) -> Iterator[int]:
        start = datetime.fromtimestamp(ms / 1000, UTC).astimezone(self.zone)
        for slot in CronSim(self.fields, start, reverse=reverse):
            yield int(slot.timestamp() * 1000)


def parse(expr: str, tz: str = "UTC") -> Cron:
    """The expression in `tz` (an IANA name: Europe/London), or CronError saying what is wrong."""
    text = " ".join(expr.split())
    fields = ALIASES.get(text.lower(), text)
    if len(fields.split(" ")) != 5:
        raise CronError(
            f"cron expression {expr!r}: want 5 fields (minute hour day-of-month month day-of-week) or @daily, ..."
        )
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {tz!r} (an IANA name, e.g. Europe/London or UTC)") from None
    try:
        CronSim(fields, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise CronError(f"cron expression {expr!r}: {str(exc).lower()}") from None
    return Cron(text, fields, tz, zone)


def local_time(ms: int, tz: str) -> str:
    """A slot as its time zone's clock shows it: 2026-12-24 02:00 GMT."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return (
        (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
    )

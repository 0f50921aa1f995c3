"""A delayed job's start time (submit --at/--in; `submit(at=..., delay_s=...)`), as the epoch milliseconds
JobSpec.start_at_ms carries.

Rules: the time is fixed here, on the submitting machine: a naive datetime is this machine's local time,
a delay counts from this machine's clock; the broker's clock then decides when it has come (keep clocks
in sync, as for any grid). A time now or past is allowed and runs the job at once: a script that
computed a time a moment ago must not fail because the moment has passed.
"""

from __future__ import annotations

import math
import time
from datetime import datetime

from gridd.protocol.errors import InvalidRequest


def start_at_ms(at: datetime | None = None, delay_s: float | None = None) -> int | None:
    """The start time of a job that must not start before `at`, or before `delay_s` seconds from now;
    None when neither is given. InvalidRequest for both, or for a delay that is not a number of 0 or more."""
    if at is not None and delay_s is not None:
        raise InvalidRequest("a job takes a start time or a delay, not both (at= or delay_s=; --at or --in)")
    if delay_s is not None:
        if not (delay_s >= 0 and math.isfinite(delay_s)):
            raise InvalidRequest(f"a delay must be a number of seconds of 0 or more, got {delay_s!r}")
        return time.time_ns() // 1_000_000 + round(delay_s * 1000)
    if at is not None:
        return max(0, round(at.timestamp() * 1000))  # a naive datetime: local time (as datetime.timestamp says)
    return None

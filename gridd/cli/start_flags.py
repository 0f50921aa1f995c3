"""submit --at TIME | --in DURATION: what a person types, as the job's start time (JobSpec.start_at_ms).

Rule: text that is not a time or a duration is a usage error (ConfigError: one line, exit 2) raised
before anything is sent, so nothing is created. What the time means (local unless it says its offset, a
past time runs at once) is gridd.client.start_time's, shared with the Python API.
"""

from __future__ import annotations

from datetime import datetime

from gridd.client.start_time import start_at_ms
from gridd.config import parse_duration
from gridd.protocol.errors import ConfigError


def start_of(at: str | None, delay: str | None) -> int | None:
    """The start time `--at` or `--in` gives (argparse keeps them apart), or None for neither."""
    if at is not None:
        try:
            when = datetime.fromisoformat(at.strip())
        except ValueError:
            raise ConfigError(
                "--at wants an ISO 8601 time such as 2026-12-24T02:00 (this machine's local time),"
                f" 2026-12-24T02:00:30Z or 2026-12-24T02:00+01:00, got {at!r}"
            ) from None
        return start_at_ms(at=when)
    if delay is not None:
        seconds = parse_duration(delay, "--in")
        if seconds is None:
            raise ConfigError(f"--in wants a duration such as 90m, 2h or 45s, got {delay!r}")
        return start_at_ms(delay_s=seconds)
    return None

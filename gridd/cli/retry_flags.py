"""submit's --retry-on and --retry-delay, read into the JobSpec fields they set (gridd/protocol/retries.py).

Rule: a list or a duration that cannot be read is a ConfigError naming the flag (exit 2), before anything
is submitted.
"""

from __future__ import annotations

import argparse

from gridd.config import parse_duration
from gridd.protocol.errors import ConfigError
from gridd.protocol.retries import MAX_RETRY_DELAY_S, parse_retry_on


def retry_fields(args: argparse.Namespace) -> tuple[list[str], float | None]:
    """(retry_on, retry_delay_s) of the spec: ([], None) when neither flag is given (any failure is
    retried after the broker's delay, as without them)."""
    retry_on: list[str] = []
    if args.retry_on is not None:
        try:
            retry_on = parse_retry_on(args.retry_on)
        except ValueError as exc:
            raise ConfigError(f"--retry-on: {exc}") from None
    delay = None
    if args.retry_delay is not None:
        delay = parse_duration(args.retry_delay, "--retry-delay")
        if delay is None or delay > MAX_RETRY_DELAY_S:
            wanted = "a duration from 0 to 7d, such as 10s or 5m"
            raise ConfigError(f"--retry-delay must be {wanted}, got {args.retry_delay!r}")
    return retry_on, delay

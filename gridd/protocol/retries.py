"""The words of cause-aware retries (`submit --retry-on`, `--retry-delay`): what a failed attempt's cause is
called, and how a list of them is written. Pure: the CLI and the Python client check what a user wrote
with `parse_cause`, the broker reads a job's list with it (gridd/broker/retry_policy.py decides).

A cause is one of:
- `exit:N` or `exit:A-B`: the command exited with status N (or A..B), 1..255;
- `signal:N`: a signal ended the command (the worker reports status 128+N), 1..64;
- `timeout`: its --timeout ended it (status 124);
- `lost`: its lease expired (the worker vanished, or restarted while running it);
- `error`: the worker could not run it (no working directory, a bundle it could not fetch) or a batch
  task returned another number of results than it had records: no status of the command's own;
- `any`: every failure (what a job without --retry-on retries).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Final

import msgspec

EXIT, SIGNAL = "exit", "signal"
TIMEOUT, LOST, ERROR, ANY = "timeout", "lost", "error", "any"
NAMED: Final = (TIMEOUT, LOST, ERROR, ANY)
MAX_STATUS, MAX_SIGNAL = 255, 64
MAX_RETRY_DELAY_S: Final = 7 * 86400.0  # a week: a longer first delay is a schedule, not a retry
BACKOFF_CAP_S: Final = 3600.0  # --retry-delay doubles up to an hour (a longer one does not double)
POISON_WORKERS: Final = 3  # the same status on this many different workers makes a job poison

# On the wire a cause is checked for its shape only; `parse_cause` checks its numbers.
RetryCause = Annotated[str, msgspec.Meta(pattern=r"^(timeout|lost|error|any|exit:\d{1,3}(-\d{1,3})?|signal:\d{1,2})$")]
RetryCauses = Annotated[list[RetryCause], msgspec.Meta(max_length=64)]
RetryDelay = Annotated[float, msgspec.Meta(ge=0, le=MAX_RETRY_DELAY_S)]

_SHAPE = r"^(exit|signal):(\d+)(?:-(\d+))?$"  # compiled on first use (re keeps it): start-up of client commands


class Cause(msgspec.Struct, frozen=True):  # not a dataclass: see gridd/protocol/handshake.py
    """One cause of a --retry-on list: `kind` is exit, signal or a named one; low..high its numbers."""

    kind: str
    low: int = 0
    high: int = 0

    def covers(self, kind: str, number: int = 0) -> bool:
        """Whether a failure of `kind` (with its status or signal `number`) is this cause."""
        if self.kind == ANY:
            return True
        return self.kind == kind and (kind not in (EXIT, SIGNAL) or self.low <= number <= self.high)


def parse_cause(text: str) -> Cause:
    """A cause as written (`exit:75`, `exit:64-78`, `signal:9`, `timeout`, `lost`, `error`, `any`);
    ValueError saying what is wrong otherwise."""
    word = text.strip().lower()
    if word in NAMED:
        return Cause(word)
    shape = re.match(_SHAPE, word)
    if shape is None:
        raise ValueError(f"{text!r} is not a cause: expected exit:N, exit:A-B, signal:N, timeout, lost, error or any")
    kind, low = shape[1], int(shape[2])
    high = int(shape[3]) if shape[3] is not None else low
    top = MAX_STATUS if kind == EXIT else MAX_SIGNAL
    if not 1 <= low <= top or not 1 <= high <= top:
        raise ValueError(f"{text!r}: {kind} wants a number from 1 to {top}")
    if low > high:
        raise ValueError(f"{text!r}: the range goes backwards (write {kind}:{high}-{low})")
    return Cause(kind, low, high)


def parse_retry_on(text: str) -> list[str]:
    """A comma-separated --retry-on list as the canonical causes a JobSpec carries; ValueError if one is
    not a cause, or the list is empty."""
    words = [w.strip().lower() for w in text.split(",")]
    if not any(words):
        raise ValueError("expected one or more causes separated by commas, e.g. exit:75,signal:9,lost,timeout")
    for word in words:
        parse_cause(word)
    return list(dict.fromkeys(words))


def causes_problem(causes: Sequence[str]) -> str | None:
    """Why a --retry-on list cannot be used, in one line (its first cause that cannot be read); None if it can."""
    for cause in causes:
        try:
            parse_cause(cause)
        except ValueError as exc:
            return f"--retry-on: {exc}"
    return None

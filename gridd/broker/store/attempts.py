"""The attempts table: one row per ended attempt of a job (a result, an expiry, a restart), with what its
worker measured, for `gridd show` and `gridd report`. Part of the store.

Rule: an attempt's row is written in the transaction that ends it, keyed by (job, lease), so an attempt
is recorded once whatever happens to its job later.
"""

from __future__ import annotations

from collections.abc import Sequence

from gridd.broker.store.sql import Tx, rows_of
from gridd.protocol.messages import JobResult

# (job_id, lease, attempt, worker, started_ms, ended_ms, exit_code, outcome, code, bundle) + Measured
Attempt = tuple[int, int, int, str | None, int | None, int, int | None, str, str | None, str | None]
Measured = tuple[int | None, float | None, float | None, int | None, int | None, int | None]  # lent: 0/1

_COLUMNS = (
    "attempt, worker, started_ms, ended_ms, exit_code, outcome, code, bundle,"
    " wall_ms, cpu_user_s, cpu_system_s, max_rss_kb, output_bytes, lent"
)
_VALUES = rows_of(
    *("bigint", "bigint", "bigint", "text", "bigint", "bigint", "bigint", "text", "text", "text"),
    *("bigint", "float8", "float8", "bigint", "bigint", "int"),
)
_INSERT = (
    f"INSERT INTO attempts (job_id, lease, {_COLUMNS}) {_VALUES}"  # noqa: S608
    " ON CONFLICT (job_id, lease) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.replace(" ", "").split(","))
)


def record(db: Tx, ended: Sequence[tuple[Attempt, Measured]]) -> None:
    db.insert_rows(_INSERT, [attempt + measured for attempt, measured in ended])


def measured(result: JobResult, lent: bool | None) -> Measured:
    """The accounting columns of a finished attempt. An older worker measures nothing: its wall time is
    then the span it reported, and its output what it sent."""
    wall = result.wall_ms if result.wall_ms is not None else max(0, result.ended_ms - result.started_ms)
    output = result.output_bytes if result.output_bytes is not None else len(result.stdout) + len(result.stderr)
    return (wall, result.cpu_user_s, result.cpu_system_s, result.max_rss_kb, output, _flag(lent))


def _flag(value: bool | None) -> int | None:
    """A flag as the column holds it (PostgreSQL's INTEGER takes no bool)."""
    return None if value is None else int(value)

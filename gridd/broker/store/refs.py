"""How clients name jobs and groups ("42", "g7"), as the SQLite store keys them.

Rule: an id that is not one (too long, not digits) is an unknown job, never an error of the store.
"""

from __future__ import annotations

from collections.abc import Sequence

from gridd.broker.store.sql import Tx, rows
from gridd.protocol.errors import UnknownJob


def parse_job_id(job_id: str) -> int:
    """A job id as the database keys it; anything else is an unknown job."""
    if not job_id.isdigit() or len(job_id) > 18:
        raise UnknownJob(f"no job has id {job_id!r}")
    return int(job_id)


def parse_ref(ref: str) -> tuple[str, int]:
    """('job', id) or ('group', id) for a job id ("42") or a group id ("g7")."""
    kind, digits = ("group", ref[1:]) if ref.startswith("g") else ("job", ref)
    if not digits.isdigit() or len(digits) > 18:
        raise UnknownJob(f"no job or group has id {ref!r}")
    return kind, int(digits)


def group_name(group_id: int | None) -> str | None:
    return None if group_id is None else f"g{group_id}"


def expand_refs(db: Tx, refs: Sequence[str]) -> list[tuple[str, int | None, str | None]]:
    """Each ref as (ref, job id or None if unknown, group name if it came from a group), in order;
    a group stands for all its jobs. Unknown ids are kept (job id None) for the caller to refuse."""
    out: list[tuple[str, int | None, str | None]] = []
    for ref in refs:
        try:
            kind, key = parse_ref(ref)
        except UnknownJob:
            out.append((ref, None, None))
            continue
        if kind == "job":
            out.append((ref, key, None))
            continue
        members = rows(db, "SELECT id FROM jobs WHERE group_id = ? ORDER BY id", (key,))
        if not members:
            out.append((ref, None, None))
        out.extend((str(m[0]), int(m[0]), ref) for m in members)
    return out

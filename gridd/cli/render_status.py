"""How `gridd status` looks to a person (two lines) and to a script (--json), and the JSON every command
prints.

Apart from render.py, which formats jobs, workers and events, so that `gridd status` imports none of
that (shlex, gridd.tui.formatting, gridd.resources, job states: ~0.7 ms of its start-up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from gridd.printable import printable

if TYPE_CHECKING:  # an annotation only: `gridd show` (render.py's to_json) imports no grid message
    from gridd.protocol.grid_messages import StatusReported

_json = msgspec.json.Encoder()


def to_json(value: Any) -> str:
    return _json.encode(value).decode()


def status(report: StatusReported) -> str:
    counts = printable("  ".join(f"{state} {n}" for state, n in report.counts.items()))
    return f"jobs     {counts}\nworkers  {report.workers} connected, {report.slots} slots, {report.running} running"


def status_record(report: StatusReported) -> dict[str, object]:
    """The `status --json` object."""
    fields: dict[str, object] = {"counts": report.counts, "workers": report.workers, "slots": report.slots}
    fields["running"] = report.running  # the number of running jobs: not a job state
    return fields

"""What a use case changed, as other brokers on the same store must hear it: the jobs' transitions and the
tokens revoked, found in its result, and their encoding as the payloads of PostgreSQL notifications
(pg_store.py sends them in the transaction that made the change, so they are delivered if and only if it
commits, in commit order).

Rules: every use case that changes a job's state, or revokes a token, names its `Changes` in the table
(usecases.py); one that does not announce is invisible to the other brokers' counts, events, waiters and
open connections. A payload is text (base64 of msgpack) under PostgreSQL's limit of 8,000 bytes; a large
batch is several.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec

from gridd.broker.store.gang_rows import GangGrant
from gridd.broker.store.interface import Announced, Ask, KeyedSubmit, TokenRow
from gridd.broker.store.schedule_rows import Fired
from gridd.broker.transitions import Transition
from gridd.protocol.messages import LeasedJob
from gridd.protocol.states import JobState

Args = tuple[Any, ...]
Kwargs = dict[str, Any]
# From a use case's result and its arguments (after the transaction), what it changed.
Changes = Callable[[Any, Args, Kwargs], Announced]
PURGED = "job.purged"  # removed by retention: no state now, `previous` the one it left
REASON_CHARS = 1_000  # of a reason, in a notification (the whole is in the store)

PAYLOAD_BYTES = 7_800  # PostgreSQL refuses a payload of 8,000 bytes or more
_Row = tuple[str, str, str, int, str | None, int | None, str | None, str | None, int | None]
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(tuple[str | None, list[_Row], list[tuple[int, str]]])


def submitted(result: tuple[list[Transition], Any], args: Args, kwargs: Kwargs) -> Announced:
    return Announced("job.submitted", list(result[0]))


def keyed(result: KeyedSubmit, args: Args, kwargs: Kwargs) -> Announced:
    return Announced("job.submitted", list(result.changed))


def fired(result: Sequence[Fired], args: Args, kwargs: Kwargs) -> Announced:
    return Announced("job.submitted", [t for f in result for t in f.transitions])


def promoted(result: tuple[list[Transition], Any], args: Args, kwargs: Kwargs) -> Announced:
    return Announced("job.due", list(result[0]))


def leased(result: tuple[list[list[LeasedJob]], list[int]], args: Args, kwargs: Kwargs) -> Announced:
    asks: Sequence[Ask] = args[0] if args else kwargs["asks"]
    return Announced(None, [_started(j, a.worker) for a, jobs in zip(asks, result[0], strict=True) for j in jobs])


def leased_gangs(result: tuple[list[list[LeasedJob]], list[int]], args: Args, kwargs: Kwargs) -> Announced:
    """A gang is one job: its rank 0 member's lease is the job's, on that member's worker."""
    grants: Sequence[GangGrant] = args[0] if args else kwargs["grants"]
    return Announced(None, [_started(m[0], g.seats[0].worker) for g, m in zip(grants, result[0], strict=True) if m])


def second(
    result: tuple[Any, list[Transition]] | tuple[Any, list[Transition], Any], args: Args, kwargs: Kwargs
) -> Announced:
    """Completions, re-attachments and control actions: their transitions are the result's second item."""
    return Announced(None, list(result[1]))


def ended(result: list[Transition], args: Args, kwargs: Kwargs) -> Announced:
    """Expired leases."""
    return Announced(None, list(result))


def returned(result: list[Transition], args: Args, kwargs: Kwargs) -> Announced:
    return Announced("job.returned", list(result))


def purged(result: list[tuple[str, str, str]], args: Args, kwargs: Kwargs) -> Announced:
    """Jobs retention removed (id, queue, state), as transitions to no state from the one they left."""
    return Announced(PURGED, [Transition(job_id, "", queue, 0, previous=state) for job_id, queue, state in result])


def revoked(result: TokenRow, args: Args, kwargs: Kwargs) -> Announced:
    return Announced(None, [], [(result.id, result.view.name)])


def _started(job: LeasedJob, worker: str) -> Transition:
    return Transition(job.job_id, JobState.RUNNING, job.spec.queue, job.attempt, worker, previous=JobState.QUEUED)


def encode(announced: Announced) -> Iterator[str]:
    """The payloads that carry `announced`, each under PAYLOAD_BYTES."""
    rows: list[_Row] = [
        (t.job_id, t.state, t.queue, t.attempt, t.worker, t.exit_code, _short(t.reason), t.previous, t.ran_ms)
        for t in announced.changed
    ]
    if announced.revoked:  # few, and small: they ride in a payload of their own
        yield base64.b64encode(_encoder.encode((announced.kind, [], announced.revoked))).decode()
    start = 0
    while start < len(rows):
        end = min(len(rows), start + 64)  # rows are some 50-100 bytes: most payloads fit at the first try
        while True:  # halve until it fits
            text = base64.b64encode(_encoder.encode((announced.kind, rows[start:end], []))).decode()
            if len(text) < PAYLOAD_BYTES or end - start == 1:
                break
            end = start + max(1, (end - start) // 2)
        yield text
        start = end


def decode(payload: str) -> Announced:
    kind, rows, revoked = _decoder.decode(base64.b64decode(payload))
    return Announced(kind, [Transition(*row) for row in rows], list(revoked))


def _short(reason: str | None) -> str | None:
    return reason if reason is None or len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 1] + "…"

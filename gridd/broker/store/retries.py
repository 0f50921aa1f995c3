"""What the store keeps for cause-aware retries (gridd/broker/retry_policy.py decides): each failed job's
retry policy, read from its spec, and its strikes (the failures that count towards poison), kept in the
job's row as JSON text. Part of the store: run inside the transaction that ends the attempts.

Rule: strikes are written only by the statement that ends an attempt, and cleared (with the poison
mark) only by a person's retry (control.py), so a job's strikes are its failures since it was submitted
or last retried.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from gridd.broker.retry_policy import Retries, Strikes
from gridd.broker.store.sql import Tx, rows


class _RetrySpec(msgspec.Struct, frozen=True):
    """The part of a stored JobSpec the policy reads: the rest is skipped while decoding."""

    retry_on: list[str] = msgspec.field(default_factory=list)
    retry_delay_s: float | None = None


_spec_decoder = msgspec.msgpack.Decoder(_RetrySpec)
_strikes_decoder = msgspec.json.Decoder(dict[str, list[str]])
_strikes_encoder = msgspec.json.Encoder()


def policies(db: Tx, job_ids: Iterable[int]) -> dict[int, tuple[Retries, Strikes]]:
    """The retry policy and the strikes of each of these jobs, in one read (none for none)."""
    job_ids = list(job_ids)
    if not job_ids:
        return {}
    found = rows(
        db, "SELECT id, spec, strikes FROM jobs WHERE id IN (SELECT value FROM json_each(?))", (db.ids(job_ids),)
    )
    out: dict[int, tuple[Retries, Strikes]] = {}
    for job_id, spec, strikes in found:
        wanted = _spec_decoder.decode(spec)
        out[int(job_id)] = (
            Retries.of(wanted.retry_on, wanted.retry_delay_s),
            _strikes_decoder.decode(strikes) if strikes else {},
        )
    return out


def strikes_text(strikes: Strikes) -> str | None:
    """As the jobs.strikes column holds them (None: none)."""
    return _strikes_encoder.encode(strikes).decode() if strikes else None

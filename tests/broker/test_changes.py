"""What one broker tells the others sharing its store: transitions survive the encoding whole, in order, and
a large batch is split into payloads PostgreSQL accepts (under 8,000 bytes each), and a revoked token is told
once."""

from __future__ import annotations

from gridd.broker.store.changes import PAYLOAD_BYTES, REASON_CHARS, decode, encode
from gridd.broker.store.interface import Announced
from gridd.broker.transitions import Transition
from gridd.protocol.states import JobState


def test_a_batch_of_transitions_comes_back_whole_and_in_order_from_payloads_under_the_limit() -> None:
    changed = [
        Transition(str(n), JobState.FAILED, f"queue-{n % 7}", 3, f"worker-{n}", 1, "exit 1", JobState.RUNNING, n * 10)
        for n in range(5_000)
    ]
    payloads = list(encode(Announced("job.completed", changed, [(7, "ci")])))
    assert len(payloads) > 1
    assert all(len(p) < PAYLOAD_BYTES for p in payloads)
    back = [decode(p) for p in payloads]
    assert {a.kind for a in back} == {"job.completed"}
    assert [t for a in back for t in a.changed] == changed
    assert [r for a in back for r in a.revoked] == [(7, "ci")]  # once


def test_a_long_reason_is_shortened_so_that_one_transition_always_fits() -> None:
    long = Transition("1", JobState.CANCELLED, "q", 0, reason="x" * 50_000, previous=JobState.QUEUED)
    [payload] = list(encode(Announced(None, [long])))
    announced = decode(payload)
    [back] = announced.changed
    assert announced.kind is None
    assert back.reason is not None and len(back.reason) == REASON_CHARS
    assert (back.job_id, back.state, back.previous) == ("1", JobState.CANCELLED, JobState.QUEUED)

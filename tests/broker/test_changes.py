"""What one broker tells the others sharing its store: transitions survive the encoding whole, in order, and
a large batch is split into payloads PostgreSQL accepts (under 8,000 bytes each)."""

from __future__ import annotations

from gridd.broker.store.changes import PAYLOAD_BYTES, REASON_CHARS, decode, encode
from gridd.broker.transitions import Transition
from gridd.protocol.states import JobState


def test_a_batch_of_transitions_comes_back_whole_and_in_order_from_payloads_under_the_limit() -> None:
    changed = [
        Transition(str(n), JobState.FAILED, f"queue-{n % 7}", 3, f"worker-{n}", 1, "exit 1", JobState.RUNNING, n * 10)
        for n in range(5_000)
    ]
    payloads = list(encode(("job.completed", changed)))
    assert len(payloads) > 1
    assert all(len(p) < PAYLOAD_BYTES for p in payloads)
    back = [decode(p) for p in payloads]
    assert {kind for kind, _ in back} == {"job.completed"}
    assert [t for _, part in back for t in part] == changed


def test_a_long_reason_is_shortened_so_that_one_transition_always_fits() -> None:
    long = Transition("1", JobState.CANCELLED, "q", 0, reason="x" * 50_000, previous=JobState.QUEUED)
    [payload] = list(encode((None, [long])))
    kind, [back] = decode(payload)
    assert kind is None
    assert back.reason is not None and len(back.reason) == REASON_CHARS
    assert (back.job_id, back.state, back.previous) == ("1", JobState.CANCELLED, JobState.QUEUED)

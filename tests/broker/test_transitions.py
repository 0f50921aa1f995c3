"""One table says how a job's state may change (gridd/broker/transitions.py): a move it does not list is
refused, and every change the store makes, whatever the use case, is one it lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridd.broker import transitions as tr
from gridd.broker.transitions import NEW, TABLE, Move, Transition
from gridd.protocol.errors import IllegalTransition
from gridd.protocol.messages import LeaseRef
from gridd.protocol.states import JobState as S
from tests.broker.test_store import TTL_MS, lease, result, spec, store_at
from tests.clock import FakeClock


@pytest.mark.parametrize(
    ("state", "move"),
    [
        (S.SUCCEEDED, Move.LEASE),  # a finished job is never leased again
        (S.QUEUED, Move.SUCCEED),  # a result needs a running attempt
        (S.RUNNING, Move.HOLD),
        (S.QUEUED, Move.RELEASE),
        (S.RUNNING, Move.RETRY),
        (S.FAILED, Move.CANCEL),
        (S.SUCCEEDED, Move.DEP_LOST),
        (NEW, Move.LEASE),
    ],
)
def test_the_table_refuses_a_move_it_does_not_list(state: str | None, move: Move) -> None:
    assert not (state is not None and tr.allows(state, move))
    with pytest.raises(IllegalTransition):
        tr.step(state, move)


def test_a_move_that_queues_a_job_makes_it_wait_while_dependencies_remain() -> None:
    assert tr.step(S.HELD, Move.RELEASE) == S.QUEUED
    assert tr.step(S.HELD, Move.RELEASE, pending_deps=1) == S.WAITING
    assert tr.step(NEW, Move.SUBMIT, pending_deps=2) == S.WAITING
    assert tr.step(S.RUNNING, Move.REQUEUE, pending_deps=1) == S.QUEUED  # a retry of an attempt never waits


# Every (from, to) the table allows, with the wait for dependencies of the moves that queue a job.
EDGES = {(source, to) for (source, _), to in TABLE.items()} | {
    (source, S.WAITING) for (source, move) in TABLE if move in (Move.SUBMIT, Move.RELEASE, Move.RETRY)
}


async def test_every_state_change_the_store_makes_is_one_the_table_lists(tmp_path: Path) -> None:
    clock = FakeClock()
    seen: list[Transition] = []
    async with store_at(tmp_path) as store:
        first, _ = await store.submit_jobs([spec(max_attempts=2), spec(), spec()], clock.now_ms())
        seen += first
        a, b, c = (t.job_id for t in first)
        after, _ = await store.submit_jobs([spec()], clock.now_ms(), after=[a])
        seen += after
        for action, refs in (("hold", [b]), ("release", [b]), ("hold", [after[0].job_id])):
            seen += (await store.control_jobs(action, refs, clock.now_ms()))[1]
        leased = await lease(store, clock, n=3)
        seen += [Transition(j.job_id, S.RUNNING, "default", j.attempt, previous=S.QUEUED) for j in leased]
        by_id = {j.job_id: j for j in leased}
        seen += (await store.complete_jobs("w1", [result(by_id[a], exit_code=1)], clock.now_ms(), 0))[1]
        seen += await store.return_leases("w1", [LeaseRef(job_id=c, lease=by_id[c].lease)])
        clock.advance(TTL_MS / 1000 + 1)
        seen += await store.expire_leases(clock.now_ms())  # b's lease; a's second attempt is not leased yet
        leased = await lease(store, clock, n=3)
        for job in leased:
            exit_code = 1 if job.job_id == a else 0
            seen += (await store.complete_jobs("w1", [result(job, exit_code=exit_code)], clock.now_ms(), 0))[1]
        seen += (await store.control_jobs("retry", [a], clock.now_ms()))[1]
        seen += (await store.control_jobs("cancel", [a], clock.now_ms()))[1]
    moves = {(t.previous, t.state) for t in seen}
    assert {(S.HELD, S.CANCELLED), (S.RUNNING, S.FAILED), (S.FAILED, S.QUEUED)} <= moves  # the scenario ran
    assert [t for t in seen if (t.previous, t.state) not in EDGES] == []

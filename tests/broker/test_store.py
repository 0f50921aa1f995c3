"""The store on a real SQLite file and on a real PostgreSQL database (each test runs on both): what is
acknowledged is durable, leasing is fair and fenced, each job's outcome is recorded exactly once, leases
expire and re-attach as the guarantees say, control actions refuse what makes no sense, and a storage
failure is a StorageFailed that loses nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from gridd.broker.store import Ask, Revoked, Store, open_store
from gridd.protocol.errors import ErrorCode, StorageFailed, UnknownJob
from gridd.protocol.messages import JobResult, JobSpec, LeasedJob, LeaseRef
from tests.clock import FakeClock
from tests.conftest import eventually, store_location

TTL_MS = 30_000
RETRY_MS = 1_000


@asynccontextmanager
async def store_at(path: Path) -> AsyncIterator[Store]:
    with anyio.fail_after(10):
        async with open_store(store_location(path)) as store:
            yield store


def spec(*argv: str, **kw: object) -> JobSpec:
    return JobSpec(argv=list(argv or ["true"]), **kw)  # type: ignore[arg-type]


def result(job: LeasedJob, exit_code: int | None = 0, **kw: object) -> JobResult:
    now = 1_700_000_000_000
    return JobResult(
        job_id=job.job_id, lease=job.lease, exit_code=exit_code, outcome="exited", started_ms=now, ended_ms=now, **kw
    )  # type: ignore[arg-type]


async def submit(store: Store, clock: FakeClock, *specs: JobSpec) -> list[str]:
    out = await store.submit_jobs(list(specs), clock.now_ms())
    changed = out[0] if isinstance(out, tuple) else out  # (transitions, group) since groups landed
    return [t.job_id for t in changed]


async def lease(store: Store, clock: FakeClock, worker: str = "w1", n: int = 1, queues=("default",)) -> list[LeasedJob]:
    return (await store.lease_for([Ask(worker, [(q, "") for q in queues], n)], clock.now_ms(), TTL_MS))[0]


async def lease_one(store: Store, clock: FakeClock, worker: str = "w1") -> LeasedJob:
    (job,) = await lease(store, clock, worker)
    return job


# ---- durable submit ------------------------------------------------------------------------------------------


async def test_submitted_jobs_survive_closing_and_reopening_the_store_with_the_same_ids_in_order(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    specs = [spec("echo", str(i), queue="q" if i % 2 else "default", priority=i) for i in range(5)]
    async with store_at(tmp_path) as store:
        ids = await submit(store, clock, *specs)
    assert ids == sorted(ids, key=int) and len(set(ids)) == 5
    async with store_at(tmp_path) as store:
        views = await store.get_jobs(ids)
        assert [v.id for v in views] == ids
        assert [v.argv for v in views] == [s.argv for s in specs]
        assert [v.queue for v in views] == [s.queue for s in specs]
        assert {v.state for v in views} == {"queued"}
        more = await submit(store, clock, spec())
        assert int(more[0]) > int(ids[-1])  # ids are never reused after a restart


async def test_a_submit_written_in_several_statements_keeps_each_job_with_its_own_spec_in_order(
    tmp_path: Path,
) -> None:
    """SQLite writes a submit's jobs up to 64 to a statement: 131 jobs take statements of 64, 64, 2 and 1
    rows, and each job keeps its own command, queue and priority under consecutive ids."""
    clock = FakeClock()
    specs = [spec("echo", str(i), queue="q" if i % 3 else "default", priority=i % 5) for i in range(131)]
    async with store_at(tmp_path) as store:
        ids = await submit(store, clock, *specs)
        views = await store.get_jobs(ids)
    assert [int(i) for i in ids] == list(range(int(ids[0]), int(ids[0]) + 131))
    assert [(v.argv, v.queue, v.priority) for v in views] == [(s.argv, s.queue, s.priority) for s in specs]
    assert {v.state for v in views} == {"queued"}


async def test_a_leased_jobs_spec_is_the_one_submitted(tmp_path: Path) -> None:
    clock = FakeClock()
    sent = spec("sh", "-c", "cat", env={"A": "1"}, stdin=b"in\0put", timeout_s=2.5, max_attempts=7)
    async with store_at(tmp_path) as store:
        (job_id,) = await submit(store, clock, sent)
        job = await lease_one(store, clock)
    assert (job.job_id, job.spec, job.attempt) == (job_id, sent, 1)
    assert job.deadline_ms == clock.now_ms() + TTL_MS


# ---- leasing --------------------------------------------------------------------------------------------------


async def test_leasing_picks_the_highest_priority_first_then_the_oldest(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        ids = await submit(store, clock, *(spec(priority=p) for p in [0, 5, 5, -1, 0, 1000]))
        order = [(await lease_one(store, clock)).job_id for _ in ids]
        assert await lease(store, clock) == []
    assert order == [ids[5], ids[1], ids[2], ids[0], ids[4], ids[3]]


async def test_a_worker_only_gets_jobs_of_the_queues_it_serves_best_first_across_them(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        gpu_low, cpu, gpu_high, other = await submit(
            store,
            clock,
            spec(queue="gpu", priority=1),
            spec(queue="cpu", priority=2),
            spec(queue="gpu", priority=3),
            spec(queue="other", priority=9),
        )
        assert await lease(store, clock, queues=("default",), n=10) == []
        got = await lease(store, clock, queues=("cpu", "gpu"), n=10)
        assert [j.job_id for j in got] == [gpu_high, cpu, gpu_low]
        assert (await store.get_job(other))[0].state == "queued"


async def test_a_worker_that_names_a_queue_twice_still_gets_as_many_jobs_as_it_asks_for(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        await submit(store, clock, spec(), spec(), spec())
        got = await lease(store, clock, queues=("default", "default"), n=2)
    assert len({j.job_id for j in got}) == 2


async def test_no_job_is_ever_handed_to_two_workers_even_when_they_ask_at_once(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        ids = await submit(store, clock, *(spec(priority=i % 3) for i in range(40)))
        got: dict[str, list[str]] = {}

        async def take(worker: str) -> None:
            while jobs := await lease(store, clock, worker=worker, n=3):
                got.setdefault(worker, []).extend(j.job_id for j in jobs)

        async with anyio.create_task_group() as tg:
            for w in range(8):
                tg.start_soon(take, f"w{w}")
        handed = [job_id for jobs in got.values() for job_id in jobs]
        assert sorted(handed, key=int) == ids
        views = await store.get_jobs(ids)
    owner = {job_id: w for w, jobs in got.items() for job_id in jobs}
    assert all(v.state == "running" and v.worker == owner[v.id] for v in views)


async def test_each_lease_of_a_job_carries_a_new_random_fencing_token(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        await submit(store, clock, spec(max_attempts=10))
        tokens = []
        first = await lease_one(store, clock)
        tokens.append(first.lease)
        await store.return_leases("w1", [LeaseRef(job_id=first.job_id, lease=first.lease)])  # back, unspent
        second = await lease_one(store, clock, "w2")
        tokens.append(second.lease)
        clock.advance(TTL_MS / 1000 + 1)
        await store.expire_leases(clock.now_ms())  # reaped
        third = await lease_one(store, clock, "w3")
        tokens.append(third.lease)
        await store.complete_jobs("w3", [result(third, 1)], clock.now_ms(), RETRY_MS)  # failed, retried
        clock.advance(60)
        fourth = await lease_one(store, clock, "w4")
        tokens.append(fourth.lease)
        _, attempts = await store.get_job(first.job_id)
    # Unguessable (a counter from 1 was: issue 16), each new, all int64; attempts listed as they ended.
    assert len(set(tokens)) == 4 and all(2**32 < t < 2**63 for t in tokens) and first.lease > 0
    assert [(a.worker, a.lease, a.outcome) for a in attempts] == [
        ("w2", second.lease, "lease_expired"),
        ("w3", third.lease, "exited"),
    ]


# ---- exactly-once results -----------------------------------------------------------------------------------------


async def test_a_completion_under_the_current_lease_is_recorded_and_a_second_one_is_refused(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        (job_id,) = await submit(store, clock, spec())
        job = await lease_one(store, clock)
        (ok,), changed = await store.complete_jobs("w1", [result(job, 0, stdout=b"one")], clock.now_ms(), RETRY_MS)
        assert (ok.code, ok.state) == (0, "succeeded")
        assert [(t.job_id, t.state) for t in changed] == [(job_id, "succeeded")]
        (again,), changed = await store.complete_jobs("w2", [result(job, 9, stdout=b"two")], clock.now_ms(), RETRY_MS)
        assert again.code == ErrorCode.STALE_LEASE == 4000
        assert changed == []
        view, attempts = await store.get_job(job_id)
        assert (view.state, view.exit_code, view.worker) == ("succeeded", 0, "w1")
        assert await store.read_output(job_id, "stdout") == (b"one", False)
        assert [(a.lease, a.exit_code) for a in attempts] == [(job.lease, 0)]


async def test_a_completion_under_an_old_lease_is_refused_and_leaves_the_new_attempt_alone(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        (job_id,) = await submit(store, clock, spec())
        old = await lease_one(store, clock, "w1")
        clock.advance(TTL_MS / 1000 + 1)
        await store.expire_leases(clock.now_ms())  # w1 vanished; the job runs again on w2
        new = await lease_one(store, clock, "w2")
        (late,), changed = await store.complete_jobs("w1", [result(old, 0)], clock.now_ms(), RETRY_MS)
        assert late.code == 4000 and "no longer current" in late.message and changed == []
        view, _ = await store.get_job(job_id)
        assert (view.state, view.exit_code, view.worker, view.attempts) == ("running", None, "w2", 2)
        (ok,), _ = await store.complete_jobs("w2", [result(new, 0)], clock.now_ms(), RETRY_MS)
        assert ok.code == 0
        assert (await store.get_job(job_id))[0].state == "succeeded"


async def test_two_results_for_the_same_lease_in_one_batch_record_only_the_first(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        (job_id,) = await submit(store, clock, spec())
        job = await lease_one(store, clock)
        outcomes, changed = await store.complete_jobs(
            "w1", [result(job, 0, stdout=b"first"), result(job, 1, stdout=b"second")], clock.now_ms(), RETRY_MS
        )
        assert [o.code for o in outcomes] == [0, 4000]
        assert [t.state for t in changed] == ["succeeded"]
        view, attempts = await store.get_job(job_id)
        assert (view.state, view.exit_code) == ("succeeded", 0)
        assert await store.read_output(job_id, "stdout") == (b"first", False)
        assert [a.exit_code for a in attempts] == [0]


async def test_a_failed_command_is_retried_after_a_delay_until_its_last_attempt_then_fails_with_its_code(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        (job_id,) = await submit(store, clock, spec(max_attempts=3))
        for attempt, code in [(1, 3), (2, 4)]:
            job = await lease_one(store, clock)
            assert job.attempt == attempt
            (o,), _ = await store.complete_jobs("w1", [result(job, code)], clock.now_ms(), RETRY_MS)
            assert o.state == "queued"
            view, _ = await store.get_job(job_id)
            assert (view.state, view.exit_code, view.worker) == ("queued", code, None)
            eligible = await store.next_eligible_ms(clock.now_ms())
            assert eligible is not None and eligible > clock.now_ms()
            clock.advance((eligible - clock.now_ms() - 1) / 1000)
            assert await lease(store, clock) == []  # not before its retry delay
            clock.advance(0.001)
            assert await store.next_eligible_ms(clock.now_ms()) is None
        job = await lease_one(store, clock)
        assert job.attempt == 3
        (o,), _ = await store.complete_jobs("w1", [result(job, 5)], clock.now_ms(), RETRY_MS)
        assert o.state == "failed"
        view, attempts = await store.get_job(job_id)
    assert (view.state, view.exit_code, view.attempts) == ("failed", 5, 3)
    assert [a.exit_code for a in attempts] == [3, 4, 5]


async def test_a_job_with_one_attempt_fails_at_once_and_a_zero_exit_succeeds(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        once, good = await submit(store, clock, spec(max_attempts=1), spec())
        a, b = await lease(store, clock, n=2)
        await store.complete_jobs("w1", [result(a, 2), result(b, 0)], clock.now_ms(), RETRY_MS)
        assert [(v.state, v.exit_code) for v in await store.get_jobs([once, good])] == [
            ("failed", 2),
            ("succeeded", 0),
        ]


# Text a PostgreSQL array literal would misread if it were not quoted and escaped (the store sends a batch's
# values as arrays there): quotes, backslashes, braces, commas, spaces, the word NULL, the empty string.
AWKWARD = ['say "no", \\n {a,b} ', "NULL", "", "\\", '"', "ünï, 🙂"]


@pytest.mark.parametrize("text", AWKWARD)
async def test_a_workers_name_and_its_failure_message_are_kept_as_sent(tmp_path: Path, text: str) -> None:
    clock = FakeClock()
    worker = f"pc {text}"
    async with store_at(tmp_path) as store:
        (job_id,) = await submit(store, clock, spec(max_attempts=1))
        job = await lease_one(store, clock, worker)
        (outcome,), _ = await store.complete_jobs(
            worker, [result(job, 3, message=text, stderr=text.encode())], clock.now_ms(), RETRY_MS
        )
        assert outcome.code == 0
        view, _ = await store.get_job(job_id)
        assert (view.state, view.worker, view.reason) == ("failed", worker, text or None)  # no message: no reason
        assert await store.read_output(job_id, "stderr") == (text.encode(), False)


# ---- lease expiry, re-attach, hand-back ---------------------------------------------------------------------------


async def test_an_expired_lease_requeues_the_job_then_fails_it_after_its_last_attempt(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        (job_id,) = await submit(store, clock, spec(max_attempts=2))
        await lease_one(store, clock, "desk-17")
        clock.advance(TTL_MS / 1000)
        assert await store.expire_leases(clock.now_ms()) == []  # good until its deadline
        clock.advance(0.001)
        (t,) = await store.expire_leases(clock.now_ms())
        assert (t.job_id, t.state, t.attempt) == (job_id, "queued", 1)
        assert "desk-17" in (t.reason or "")
        view, _ = await store.get_job(job_id)
        assert (view.state, view.worker, view.attempts) == ("queued", None, 1)
        job = await lease_one(store, clock, "desk-18")  # eligible at once, no retry delay
        assert job.attempt == 2
        clock.advance(TTL_MS / 1000 + 1)
        (t,) = await store.expire_leases(clock.now_ms())
        assert t.state == "failed"
        view, attempts = await store.get_job(job_id)
    assert (view.state, view.exit_code) == ("failed", None)
    assert "desk-18" in (view.reason or "")
    assert [(a.worker, a.outcome) for a in attempts] == [("desk-17", "lease_expired"), ("desk-18", "lease_expired")]


async def test_a_reconnecting_worker_keeps_the_leases_it_names_and_loses_the_rest(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        await submit(store, clock, spec(), spec(), spec(), spec())
        kept, stale, unnamed = await lease(store, clock, "w1", n=3)
        elsewhere = await lease_one(store, clock, "w2")
        clock.advance(20)
        named = [
            LeaseRef(job_id=kept.job_id, lease=kept.lease),
            LeaseRef(job_id=stale.job_id, lease=stale.lease + 1),  # not the current lease
            LeaseRef(job_id=elsewhere.job_id, lease=elsewhere.lease),  # another worker's job
            LeaseRef(job_id="999999", lease=1),  # no such job
        ]
        lost, changed = await store.attach_worker("w1", named, clock.now_ms() + TTL_MS, clock.now_ms())
        assert lost == named[1:]
        # jobs leased to w1 under leases it did not name (a grant lost with the connection, or a lease it
        # no longer has) expire now, the attempt counted
        assert sorted((t.job_id, t.state, t.attempt) for t in changed) == [
            (stale.job_id, "queued", 1),
            (unnamed.job_id, "queued", 1),
        ]
        assert all("w1" in (t.reason or "") for t in changed)
        assert (await store.get_job(elsewhere.job_id))[0].worker == "w2"  # another worker's job is untouched
        # the named lease was renewed: past its old deadline it is not reaped
        clock.advance(TTL_MS / 1000 - 10)
        assert [t.job_id for t in await store.expire_leases(clock.now_ms())] == [elsewhere.job_id]
        view, _ = await store.get_job(kept.job_id)
        assert (view.state, view.worker) == ("running", "w1")


async def test_the_same_worker_process_reconnecting_gets_back_unreceived_grants_without_spending_an_attempt(
    tmp_path: Path,
) -> None:
    """A lease granted as the broker died never reached the worker: the job did not run, so a job with
    --max-attempts 1 must not fail for it."""
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        await submit(store, clock, spec(), spec(max_attempts=1))
        kept, never_received = await lease(store, clock, "w1", n=2)
        named = [LeaseRef(job_id=kept.job_id, lease=kept.lease)]
        lost, changed = await store.attach_worker("w1", named, clock.now_ms() + TTL_MS, clock.now_ms(), restarted=False)
        assert lost == []
        assert [(t.job_id, t.state, t.attempt) for t in changed] == [(never_received.job_id, "queued", 0)]
        view, _ = await store.get_job(never_received.job_id)
        assert (view.state, view.attempts) == ("queued", 0)
        again = await lease_one(store, clock, "w1")
        assert (again.job_id, again.attempt) == (never_received.job_id, 1)


async def test_renewing_leases_extends_deadlines_and_reports_leases_no_longer_held(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        await submit(store, clock, spec(), spec())
        mine, theirs = await lease(store, clock, "w1", n=2)
        clock.advance(20)
        refs = [LeaseRef(job_id=mine.job_id, lease=mine.lease), LeaseRef(job_id=theirs.job_id, lease=theirs.lease)]
        assert await store.renew_leases("w1", refs[:1], clock.now_ms() + TTL_MS) == []
        assert await store.renew_leases("w2", refs[1:], clock.now_ms() + TTL_MS) == refs[1:]  # not w2's
        clock.advance(TTL_MS / 1000 - 10)
        assert [t.job_id for t in await store.expire_leases(clock.now_ms())] == [theirs.job_id]


async def test_a_returned_lease_requeues_the_job_without_spending_an_attempt(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        (job_id,) = await submit(store, clock, spec(max_attempts=1))
        job = await lease_one(store, clock, "w1")
        ref = LeaseRef(job_id=job_id, lease=job.lease)
        assert await store.return_leases("w2", [ref]) == []  # only its holder can hand it back
        (t,) = await store.return_leases("w1", [ref])
        assert (t.state, t.attempt) == ("queued", 0)
        view, _ = await store.get_job(job_id)
        assert (view.state, view.attempts, view.worker) == ("queued", 0, None)
        again = await lease_one(store, clock, "w2")
        assert (again.attempt, again.lease != job.lease) == (1, True)
        assert await store.return_leases("w1", [ref]) == []  # an old lease hands back nothing


async def test_after_a_restart_running_leases_get_one_ttl_before_being_reaped(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        (job_id,) = await submit(store, clock, spec())
        await lease_one(store, clock)
    clock.advance(120)  # the broker was down for longer than the TTL
    async with store_at(tmp_path) as store:
        assert await store.extend_running_leases(clock.now_ms() + TTL_MS) == 1
        assert await store.expire_leases(clock.now_ms() + 1) == []
        clock.advance(TTL_MS / 1000 - 1)
        assert await store.expire_leases(clock.now_ms()) == []
        assert (await store.get_job(job_id))[0].state == "running"
        clock.advance(2)
        assert [t.job_id for t in await store.expire_leases(clock.now_ms())] == [job_id]


# ---- control actions ---------------------------------------------------------------------------------------------


async def test_cancel_applies_to_queued_held_and_running_jobs_and_revokes_the_running_lease(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        running, queued, held = await submit(store, clock, spec(), spec(), spec())
        job = await lease_one(store, clock, "w1")
        assert job.job_id == running
        (o,), _, _, _ = await store.control_jobs("hold", [held], clock.now_ms())
        assert (o.code, o.state) == (0, "held")
        outcomes, changed, revoked, _ = await store.control_jobs("cancel", [queued, held, running], clock.now_ms())
        assert [(o.job_id, o.code, o.state) for o in outcomes] == [
            (queued, 0, "cancelled"),
            (held, 0, "cancelled"),
            (running, 0, "cancelled"),
        ]
        assert [(t.previous, t.state) for t in changed] == [
            ("queued", "cancelled"),
            ("held", "cancelled"),
            ("running", "cancelled"),
        ]
        assert revoked == [Revoked("w1", LeaseRef(job_id=running, lease=job.lease))]
        # the worker's late result for the cancelled job is refused
        (late,), _ = await store.complete_jobs("w1", [result(job, 0)], clock.now_ms(), RETRY_MS)
        assert late.code == 4000
        assert {v.state for v in await store.get_jobs([running, queued, held])} == {"cancelled"}
        clock.advance(3600)
        assert await store.expire_leases(clock.now_ms()) == []  # nothing left to reap


async def test_actions_that_make_no_sense_are_refused_with_the_state_named(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        done, queued = await submit(store, clock, spec(), spec())
        await store.complete_jobs("w1", [result(await lease_one(store, clock), 0)], clock.now_ms(), RETRY_MS)
        for action, job_id, state in [
            ("cancel", done, "succeeded"),
            ("hold", done, "succeeded"),
            ("release", queued, "queued"),
            ("release", done, "succeeded"),
            ("retry", done, "succeeded"),
            ("retry", queued, "queued"),
        ]:
            (o,), changed, revoked, _ = await store.control_jobs(action, [job_id], clock.now_ms())
            assert o.code == ErrorCode.ILLEGAL_TRANSITION == 3001, (action, job_id)
            assert job_id in o.message, o.message
            assert state in o.message or action == "retry", o.message
            assert (changed, revoked) == ([], [])
        (o,), _, _, _ = await store.control_jobs("cancel", [done], clock.now_ms())
        assert "state=succeeded" in o.message
        assert [(v.state, v.exit_code) for v in await store.get_jobs([done, queued])] == [
            ("succeeded", 0),
            ("queued", None),
        ]


async def test_hold_and_release_take_a_job_out_of_the_queue_and_put_it_back(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        (job_id,) = await submit(store, clock, spec())
        await store.control_jobs("hold", [job_id], clock.now_ms())
        assert await lease(store, clock) == []
        (o,), _, _, _ = await store.control_jobs("release", [job_id], clock.now_ms())
        assert (o.code, o.state) == (0, "queued")
        assert (await lease_one(store, clock)).job_id == job_id


async def test_retry_of_a_failed_job_queues_it_again_with_fresh_attempts_and_no_exit_code(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        (job_id,) = await submit(store, clock, spec(max_attempts=1))
        await store.complete_jobs("w1", [result(await lease_one(store, clock), 7)], clock.now_ms(), RETRY_MS)
        assert (await store.get_job(job_id))[0].state == "failed"
        (o,), (t,), _, _ = await store.control_jobs("retry", [job_id], clock.now_ms())
        assert (o.code, o.state, t.previous) == (0, "queued", "failed")
        view, _ = await store.get_job(job_id)
        assert (view.state, view.attempts, view.exit_code, view.worker) == ("queued", 0, None, None)
        job = await lease_one(store, clock)
        assert (job.job_id, job.attempt) == (job_id, 1)


async def test_control_of_an_unknown_job_is_refused_per_job_without_touching_the_others(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        (job_id,) = await submit(store, clock, spec())
        outcomes, changed, _, _ = await store.control_jobs("cancel", ["424242", "nope", job_id], clock.now_ms())
        assert [(o.job_id, o.code) for o in outcomes] == [("424242", 3000), ("nope", 3000), (job_id, 0)]
        assert [t.job_id for t in changed] == [job_id]
        with pytest.raises(UnknownJob):
            await store.get_job("424242")
        with pytest.raises(UnknownJob):
            await store.read_output("nope", "stdout")


@pytest.mark.parametrize("twice", [lambda i: [i, i], lambda i: [i, "0" + i]], ids=["same-id", "leading-zero"])
async def test_naming_the_same_job_twice_in_one_action_changes_it_once(tmp_path: Path, twice: Any) -> None:
    """`gridd cancel 7 7` (or a job and, now that groups exist, its group): the job is cancelled once,
    so the broker's counts and events, which follow the returned transitions, stay true."""
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        (job_id,) = await submit(store, clock, spec())
        outcomes, changed, _, _ = await store.control_jobs("cancel", twice(job_id), clock.now_ms())
        assert len(changed) == 1, changed
        assert [o.code for o in outcomes].count(0) == 1, outcomes


# ---- reads -----------------------------------------------------------------------------------------------------------


async def test_list_jobs_shows_the_newest_first_filtered_by_state_and_queue_and_pages_back(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        ids = await submit(store, clock, *(spec(queue="a" if i % 2 else "b") for i in range(7)))
        await store.control_jobs("hold", [ids[1], ids[4]], clock.now_ms())
        newest = list(reversed(ids))
        assert [v.id for v in (await store.list_jobs(None, None, 0))[0]] == newest
        assert [v.id for v in (await store.list_jobs(None, None, 3))[0]] == newest[:3]
        assert [v.id for v in (await store.list_jobs(None, None, 3, before=newest[2]))[0]] == newest[3:6]
        assert [v.id for v in (await store.list_jobs(None, None, 0, before=ids[0]))[0]] == []
        assert [v.id for v in (await store.list_jobs("held", None, 0))[0]] == [ids[4], ids[1]]
        assert [v.id for v in (await store.list_jobs(None, "a", 0))[0]] == [ids[5], ids[3], ids[1]]
        assert [v.id for v in (await store.list_jobs("held", "b", 0))[0]] == [ids[4]]
        assert await store.count_by_queue() == {"a": {"queued": 2, "held": 1}, "b": {"queued": 3, "held": 1}}


async def test_output_is_kept_byte_for_byte_with_its_truncated_flag(tmp_path: Path) -> None:
    clock = FakeClock()
    out = bytes(range(256)) * 40
    async with store_at(tmp_path) as store:
        (job_id,) = await submit(store, clock, spec())
        assert await store.read_output(job_id, "stdout") == (b"", False)  # before it ran
        job = await lease_one(store, clock)
        await store.complete_jobs(
            "w1", [result(job, 0, stdout=out, stdout_truncated=True, stderr=b"err\n")], clock.now_ms(), RETRY_MS
        )
    async with store_at(tmp_path) as store:
        assert await store.read_output(job_id, "stdout") == (out, True)
        assert await store.read_output(job_id, "stderr") == (b"err\n", False)
        view, _ = await store.get_job(job_id)
    assert (view.stdout_bytes, view.stderr_bytes) == (len(out), 4)


async def test_an_attempt_that_prints_nothing_leaves_no_output_of_the_attempt_before(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        quiet, loud = await submit(store, clock, spec(max_attempts=2), spec(max_attempts=2))
        first = await lease(store, clock, n=2)
        failed = [result(job, 1, stdout=b"try 1\n", stderr=b"oops\n") for job in first]
        await store.complete_jobs("w1", failed, clock.now_ms(), RETRY_MS)
        clock.advance(60)  # past the retry delay
        by_id = {job.job_id: job for job in await lease(store, clock, n=2)}
        await store.complete_jobs(
            "w1", [result(by_id[quiet], 0), result(by_id[loud], 0, stderr=b"try 2\n")], clock.now_ms(), RETRY_MS
        )
        assert await store.read_output(quiet, "stdout") == (b"", False)
        assert await store.read_output(quiet, "stderr") == (b"", False)
        assert await store.read_output(loud, "stdout") == (b"", False)
        assert await store.read_output(loud, "stderr") == (b"try 2\n", False)
        views = await store.get_jobs([quiet, loud])
    assert [(v.state, v.stdout_bytes, v.stderr_bytes) for v in views] == [("succeeded", 0, 0), ("succeeded", 0, 6)]


# ---- storage failures ------------------------------------------------------------------------------------------------


# SQLite's own cap (max_page_count); PostgreSQL has no per-database size limit a test could reach.
@pytest.mark.backends("sqlite")
async def test_a_full_database_refuses_a_submit_with_storage_failed_and_loses_nothing(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        before = await submit(store, clock, spec("kept", "1"), spec("kept", "2"))
        (pages,) = store._conn.execute("PRAGMA page_count").fetchall()
        store._conn.execute(f"PRAGMA max_page_count = {pages[0]}")
        big = [spec("x" * 2000, str(i)) for i in range(200)]
        with pytest.raises(StorageFailed) as caught:
            await submit(store, clock, *big)
        assert "full" in str(caught.value)
        # what was acknowledged is intact and readable; nothing of the refused submit is there
        assert [v.id for v in (await store.list_jobs(None, None, 0))[0]] == list(reversed(before))
        assert [v.argv for v in await store.get_jobs(before)] == [["kept", "1"], ["kept", "2"]]
        assert (await lease_one(store, clock)).job_id == before[0]  # and it still leases
        store._conn.execute("PRAGMA max_page_count = 1073741823")  # space freed
        after = await submit(store, clock, spec("later"))
    async with store_at(tmp_path) as store:
        views, _ = await store.list_jobs(None, None, 0)
    assert [v.id for v in views] == [after[0], *reversed(before)]


async def test_submits_made_at_once_commit_together_and_a_refused_one_is_undone_alone(tmp_path: Path) -> None:
    """Calls that arrive in the same turn of the event loop share a group commit (on the database thread);
    one refused there (an unknown `after` job) loses nothing of the others."""
    clock = FakeClock()
    outcomes: dict[int, list[str] | Exception] = {}

    async def one(i: int) -> None:
        try:
            out, _ = await store.submit_jobs([spec("echo", str(i))], clock.now_ms(), after=["999"] if i == 2 else ())
            outcomes[i] = [t.job_id for t in out]
        except UnknownJob as exc:
            outcomes[i] = exc

    async with store_at(tmp_path) as store, anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(one, i)
    assert isinstance(outcomes.pop(2), UnknownJob)
    async with store_at(tmp_path) as store:
        views, _ = await store.list_jobs(None, None, 0)
    assert sorted((v.id, v.argv) for v in views) == sorted((ids[0], ["echo", str(i)]) for i, ids in outcomes.items())


# A closed sqlite3 connection; PostgreSQL's twin (its connection killed) is the test below.
@pytest.mark.backends("sqlite")
async def test_a_store_whose_database_connection_is_gone_refuses_writes_with_storage_failed(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        await submit(store, clock, spec())
        store._conn.close()
        with pytest.raises(StorageFailed):
            await submit(store, clock, spec())


@pytest.mark.backends("postgresql")
async def test_a_transaction_whose_database_connection_is_killed_runs_again_on_a_new_one_and_counts_once(
    tmp_path: Path,
) -> None:
    """The broker's connection is killed (pg_terminate_backend, as a failover or an administrator does) while
    its transaction holds a submit and waits inside a completion: the batch runs again on a new connection,
    and each call counts once (one new job, one outcome, one attempt), nothing of the lost try kept."""
    clock = FakeClock()
    url = str(store_location(tmp_path))
    async with store_at(tmp_path) as store:
        (job_id,) = await submit(store, clock, spec())
        job = await lease_one(store, clock)
        out: dict[str, Any] = {}

        async def submit_more() -> None:
            out["submitted"] = await submit(store, clock, spec("more"))

        async def complete() -> None:
            out["outcomes"], _ = await store.complete_jobs("w1", [result(job)], clock.now_ms(), RETRY_MS)

        with psycopg.connect(url, autocommit=True) as admin, psycopg.connect(url) as holder:
            holder.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (int(job_id),))  # the completion waits
            async with anyio.create_task_group() as tg:
                tg.start_soon(submit_more)
                tg.start_soon(complete)  # the same turn: one batch, one transaction, the submit first
                waiting = await eventually(
                    lambda: admin.execute(
                        "SELECT pid FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    ).fetchall(),
                    what="the store's transaction waiting for the job's row",
                )
                admin.execute("SELECT pg_terminate_backend(%s)", (waiting[0][0],))
                holder.rollback()  # the row is free for the batch's second run
        assert [(o.job_id, o.code, o.state) for o in out["outcomes"]] == [(job_id, 0, "succeeded")]
        views, _ = await store.list_jobs(None, None, 0)
        assert [(v.id, v.state) for v in views] == [(out["submitted"][0], "queued"), (job_id, "succeeded")]
        assert [a.outcome for a in (await store.get_job(job_id))[1]] == ["exited"]


async def test_a_job_whose_last_attempt_expired_has_no_exit_status_though_an_earlier_one_had(tmp_path: Path) -> None:
    """`submit --wait` then exits 125 (no status), not with the status of an attempt before the last."""
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        (job_id,) = await submit(store, clock, spec(max_attempts=2))
        first = await lease_one(store, clock)
        await store.complete_jobs("w1", [result(first, exit_code=3)], clock.now_ms(), 0)
        assert (await store.get_job(job_id))[0].exit_code == 3  # queued again, showing attempt 1's status
        await lease_one(store, clock)
        clock.advance(TTL_MS / 1000 + 1)
        await store.expire_leases(clock.now_ms())
        view, attempts = await store.get_job(job_id)
    assert (view.state, view.exit_code) == ("failed", None)
    assert [a.exit_code for a in attempts] == [3, None]


async def test_one_lease_carries_at_most_8_mib_of_specs_and_the_rest_on_the_next(tmp_path: Path) -> None:
    """Jobs with 3 MiB of stdin each: a lease of ten takes two, so its reply fits a frame; none is lost."""
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        ids = await submit(store, clock, *[spec(stdin=bytes([i]) * (3 * 1024 * 1024)) for i in range(10)])
        taken: list[LeasedJob] = []
        for _ in range(10):  # bounded: two a lease, so five leases take them all
            got = await lease(store, clock, n=10)
            assert len(got) >= 1 and sum(len(j.spec.stdin or b"") for j in got) <= 8 * 1024 * 1024
            taken += got
            if len(taken) == len(ids):
                break
        assert [j.job_id for j in taken] == ids
        big = await submit(store, clock, spec(stdin=b"x" * (9 * 1024 * 1024)))  # alone, even past the budget
        assert [j.job_id for j in await lease(store, clock, n=10)] == big

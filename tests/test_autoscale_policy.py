"""The autoscaler's decisions (gridd/cli/autoscale_policy.py), from plain snapshots and a fake `now`."""

from __future__ import annotations

from gridd.cli.autoscale_policy import Decision, Memory, QueuedJob, Settings, Snapshot, Worker, decide

S = 1000  # ms
SETTINGS = Settings(min_workers=0, max_workers=4, after_s=30, idle_s=300, warmup_s=120)


def busy(name: str, slots: int = 2, queues: tuple[str, ...] = ("default",), at: int = 0) -> Worker:
    return Worker(name, slots, running=slots, queues=queues, connected_ms=at)


def idle(name: str, slots: int = 2, queues: tuple[str, ...] = ("default",), at: int = 0) -> Worker:
    return Worker(name, slots, running=0, queues=queues, connected_ms=at)


def jobs(n: int, since_ms: int = 0, queue: str = "default") -> tuple[QueuedJob, ...]:
    return tuple(QueuedJob(queue, since_ms) for _ in range(n))


def look(
    now_s: float,
    workers: tuple[Worker, ...] = (),
    queued: tuple[QueuedJob, ...] = (),
    memory: Memory | None = None,
    settings: Settings = SETTINGS,
) -> Decision:
    return decide(Snapshot(int(now_s * S), workers, queued), settings, memory or Memory())


def test_nothing_is_started_before_a_job_has_waited_after_s() -> None:
    assert look(29, (), jobs(1)).start == 0
    assert look(30, (), jobs(1)).start == 1


def test_jobs_a_worker_has_free_slots_for_start_nothing() -> None:
    half = Worker("w1", 2, running=1, queues=("default",))
    assert look(100, (half,), jobs(3)).start == 0


def test_jobs_of_a_queue_no_worker_serves_are_unserved_even_with_free_slots_elsewhere() -> None:
    decision = look(100, (idle("w1", queues=("gpu",)),), jobs(1, queue="default"))
    assert decision.start == 1


def test_wanted_is_queued_jobs_over_the_slots_of_the_worker_last_seen_capped_by_max() -> None:
    # The newest worker has 2 slots: 5 unserved jobs want 3 workers; the first worker counts toward --max 4.
    workers = (busy("w1", slots=4, at=1), busy("w2", slots=2, at=2))
    assert look(100, workers, jobs(5)).start == 2
    assert look(100, (busy("w1", slots=2),), jobs(5)).start == 3
    assert look(100, (busy("w1", slots=2),), jobs(50)).start == 3  # 4 at most, one is there


def test_no_more_than_max_and_nothing_at_max() -> None:
    full = tuple(busy(f"w{i}") for i in range(4))
    assert look(100, full, jobs(10)).start == 0


def test_a_start_is_followed_by_a_cooldown_of_after_s_and_workers_coming_are_not_asked_for_again() -> None:
    first = look(100, (), jobs(2, queue="default"))  # slots unknown: 1 a worker
    assert first.start == 2
    again = look(110, (), jobs(2), first.memory)
    assert again.start == 0  # cooling down
    later = look(131, (), jobs(2), again.memory)
    assert later.start == 0  # both asked for are still coming (within --warmup)
    arrived = look(132, (busy("a1", slots=1, at=131),), jobs(1), later.memory)  # it took one job
    assert (arrived.start, arrived.memory.coming_count) == (0, 1)
    # Past --warmup the one that never came is forgotten: the job left asks again.
    gone = look(100 + 121, (busy("a1", slots=1),), jobs(1), arrived.memory)
    assert gone.start == 1


def test_below_min_the_missing_workers_are_asked_for_at_once() -> None:
    settings = Settings(min_workers=2, max_workers=4, warmup_s=60)
    decision = look(0, (idle("w1"),), (), settings=settings)
    assert decision.start == 1
    assert look(1, (idle("w1"),), (), decision.memory, settings).start == 0  # the one asked for is coming


def test_a_worker_idle_for_idle_s_is_stopped_and_not_asked_twice() -> None:
    first = look(0, (idle("w1"), busy("w2")))
    assert first.stop == ()
    before = look(299, (idle("w1"), busy("w2")), memory=first.memory)
    assert before.stop == ()
    after = look(300, (idle("w1"), busy("w2")), memory=before.memory)
    assert after.stop == ("w1",)
    assert look(301, (idle("w1"), busy("w2")), memory=after.memory).stop == ()  # asked already


def test_a_worker_that_ran_something_starts_its_idle_clock_again() -> None:
    m = look(0, (idle("w1"),)).memory
    m = look(200, (busy("w1"),), memory=m).memory
    assert look(400, (idle("w1"),), memory=m).stop == ()
    assert look(500, (idle("w1"),), memory=m).stop == ()  # its clock started at 400 (memory of 200 dropped it)


def test_min_workers_are_kept_longest_idle_stopped_first() -> None:
    settings = Settings(min_workers=1, max_workers=4, idle_s=10)
    m = look(0, (idle("w1"),), settings=settings).memory
    m = look(5, (idle("w1"), idle("w2"), idle("w3")), memory=m, settings=settings).memory
    decision = look(20, (idle("w1"), idle("w2"), idle("w3")), memory=m, settings=settings)
    assert decision.stop == ("w1", "w2")


def test_nothing_is_stopped_while_jobs_wait_or_workers_are_coming() -> None:
    settings = Settings(idle_s=10, after_s=30, max_workers=1)
    m = look(0, (idle("w1", queues=("a",)),), settings=settings).memory
    # A job of queue b no worker serves, and --max reached: no start, and w1 is kept while it waits.
    assert look(20, (idle("w1", queues=("a",)),), jobs(1, queue="b"), m, settings).stop == ()


def test_queue_scopes_both_the_jobs_and_the_workers() -> None:
    settings = Settings(queue="gpu", after_s=0, idle_s=0)
    assert look(1, (), jobs(3, queue="cpu"), settings=settings).start == 0
    assert look(1, (), jobs(3, queue="gpu"), settings=settings).start == 3
    assert look(0, (idle("c1", queues=("cpu",)), idle("g1", queues=("gpu",))), settings=settings).stop == ("g1",)


def test_workers_that_take_no_jobs_are_neither_capacity_nor_stopped() -> None:
    draining = Worker("w1", 2, 0, ("default",), state="draining")
    settings = Settings(idle_s=0)
    assert look(100, (draining,), jobs(1), settings=settings).start == 1
    m = look(0, (draining,), settings=settings).memory
    assert look(1, (draining,), memory=m, settings=settings).stop == ()


def test_an_idle_worker_is_kept_while_a_job_of_its_queue_was_queued_lately() -> None:
    settings = Settings(idle_s=10)
    m = look(0, (idle("w1"),), settings=settings).memory
    assert look(15, (idle("w1"),), jobs(1, since_ms=14 * S), m, settings).stop == ()  # about to take it
    assert look(15, (idle("w1"),), jobs(1, since_ms=14 * S, queue="other"), m, settings).stop == ()  # unserved
    # Queued for longer than --idle while w1 stayed idle: w1 cannot take it (its tags, say).
    assert look(15, (idle("w1"),), jobs(1, since_ms=1 * S), m, settings).stop == ("w1",)

"""A worker's capacity: which leased-ahead jobs may start, and what the next lease may claim."""

from __future__ import annotations

from gridd.protocol.messages import JobSpec
from gridd.worker.capacity import Capacity


def job(cpus: int = 1, memory_mb: int = 0) -> JobSpec:
    return JobSpec(argv=["true"], cpus=cpus, memory_mb=memory_mb)


def test_jobs_start_while_a_slot_and_their_cpus_and_memory_are_free_in_lease_order() -> None:
    two = Capacity(slots=2, cpus=2, memory_mb=1024)
    assert two.startable([], [job(), job(), job()]) == 2  # two slots
    assert two.startable([job()], [job(cpus=2), job()]) == 0  # the 2-cpu job waits, and is not overtaken
    assert two.startable([], [job(memory_mb=800), job(memory_mb=800)]) == 1
    assert two.startable([], [job(cpus=8)]) == 1  # bigger than the worker (an older broker): alone


def test_a_lease_asks_for_what_the_jobs_held_leave_free_plus_room_to_lease_ahead() -> None:
    worker = Capacity(slots=2, cpus=4, memory_mb=None)
    assert worker.budget([job(cpus=3)], prefetch=0) == (1, None)
    assert worker.budget([job(cpus=3)], prefetch=2) == (5, None)  # as much again per `slots` leased ahead
    assert Capacity(slots=1, cpus=1, memory_mb=2**40).budget([], prefetch=16) == (17, 2**40)  # wire bounds

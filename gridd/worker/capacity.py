"""What a worker can take on: its slots, cpus and memory, and what the jobs it holds leave free. Pure.

Rule: a job runs only while a slot is free and its cpus and memory fit beside those of the jobs running;
a lease request asks for what the jobs held (running or leased ahead) leave free, plus, while jobs are
short enough to lease ahead, as much again per `slots` jobs leased ahead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gridd.protocol.messages import JobSpec

# The wire's bounds on a lease request's budget (messages.RequestJobs): leasing ahead may multiply a
# large worker's size past them.
MAX_BUDGET_CPUS = 2**20
MAX_BUDGET_MEMORY_MB = 2**40


@dataclass(frozen=True, slots=True)
class Capacity:
    """A worker's size. `memory_mb` None: no limit."""

    slots: int
    cpus: int
    memory_mb: int | None

    def budget(self, held: Iterable[JobSpec], prefetch: int) -> tuple[int, int | None]:
        """The cpus and MiB the next lease may claim, given the jobs held and `prefetch` jobs leased ahead."""
        cpus, memory = _claims(held)
        free_cpus = self.cpus + self.cpus * prefetch // self.slots - cpus
        free_memory = None
        if self.memory_mb is not None:
            free_memory = min(
                max(0, self.memory_mb + self.memory_mb * prefetch // self.slots - memory), MAX_BUDGET_MEMORY_MB
            )
        return min(free_cpus, MAX_BUDGET_CPUS), free_memory

    def startable(self, running: list[JobSpec], waiting: list[JobSpec]) -> int:
        """How many of `waiting` (leased ahead, in lease order) may start now beside `running`. In order:
        a big job is not overtaken by smaller ones leased after it; one bigger than the whole worker
        (from an older broker) starts alone."""
        free = self.slots - len(running)
        cpus, memory = _claims(running)
        free_cpus = self.cpus - cpus
        free_memory = None if self.memory_mb is None else self.memory_mb - memory
        started = 0
        for spec in waiting:
            if free <= 0:
                break
            fits = spec.cpus <= free_cpus and (free_memory is None or spec.memory_mb <= free_memory)
            if not fits and free < self.slots:
                break
            started, free, free_cpus = started + 1, free - 1, free_cpus - spec.cpus
            free_memory = None if free_memory is None else free_memory - spec.memory_mb
        return started


def _claims(specs: Iterable[JobSpec]) -> tuple[int, int]:
    cpus = memory = 0
    for spec in specs:
        cpus += spec.cpus
        memory += spec.memory_mb
    return cpus, memory

"""Which jobs the jobs table shows: by state and by queue (None: any)."""

from __future__ import annotations

from dataclasses import dataclass

from gridd.tui.model.counts import STATES

STATE_CYCLE: tuple[str | None, ...] = (None, *STATES)  # all, then each state in the columns' order


@dataclass(frozen=True, slots=True)
class JobFilter:
    """A state and a queue to show, each None for all."""

    state: str | None = None
    queue: str | None = None

    def matches(self, state: str | None, queue: str | None) -> bool:
        """Does a job in `state` on `queue` belong in the table?"""
        return (self.state is None or state == self.state) and (self.queue is None or queue == self.queue)

    def next_state(self) -> JobFilter:
        """The same filter with the next state in the cycle (all, queued, running, …)."""
        i = STATE_CYCLE.index(self.state) if self.state in STATE_CYCLE else 0
        return JobFilter(STATE_CYCLE[(i + 1) % len(STATE_CYCLE)], self.queue)

    def next_queue(self, queues: list[str]) -> JobFilter:
        """The same filter with the next of `queues` (after the last one: all queues)."""
        cycle: list[str | None] = [None, *queues]
        i = cycle.index(self.queue) if self.queue in cycle else 0
        return JobFilter(self.state, cycle[(i + 1) % len(cycle)])

    def label(self) -> str:
        """For the table's title: "state=all queue=all"."""
        return f"state={self.state or 'all'} queue={self.queue or 'all'}"

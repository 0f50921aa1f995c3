"""Who is waiting for which jobs to finish (`gridd wait`, `submit --wait`): answered as jobs finish,
never by polling the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import anyio


class Waiter:
    """A set of jobs still to finish, and an event set when none is left (`any_`: when one has finished)."""

    def __init__(self, job_ids: Iterable[str], any_: bool = False) -> None:
        self.remaining = set(job_ids)
        self.any = any_
        self.done = anyio.Event()

    def finished(self, job_id: str) -> None:
        if job_id in self.remaining and self.any:
            self.done.set()
        self.remaining.discard(job_id)
        if not self.remaining:
            self.done.set()


class FinishWatch:
    """Maps job ids to the waiters that wait for them."""

    def __init__(self) -> None:
        self._by_job: dict[str, list[Waiter]] = {}

    @contextmanager
    def watch(self, job_ids: Iterable[str], *, any_: bool = False) -> Iterator[Waiter]:
        """Register before reading the store, so that a job finishing in between is not missed."""
        waiter = Waiter(job_ids, any_)
        watched = list(waiter.remaining)
        for job_id in watched:
            self._by_job.setdefault(job_id, []).append(waiter)
        try:
            yield waiter
        finally:
            for job_id in watched:
                waiters = self._by_job.get(job_id)
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del self._by_job[job_id]

    def finished(self, job_ids: Iterable[str]) -> None:
        """These jobs reached a final state."""
        for job_id in job_ids:
            for waiter in self._by_job.get(job_id, ()):
                waiter.finished(job_id)

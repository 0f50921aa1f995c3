"""Who is waiting for which jobs to finish (`gridd wait`, `submit --wait`, result long polls): answered as
jobs finish, never by polling the store.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import anyio

# A standing watch forgets what it knows this often, and its next poll reads its whole window from the store
# again: a bound on how long a finish it never heard (another broker's, announced while this one was away)
# can go unseen by a client that keeps polling.
STANDING_REFRESH_S = 5.0


class _Listener(Protocol):
    def finished(self, job_id: str) -> None: ...


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
        self._by_job: dict[str, list[_Listener]] = {}

    @contextmanager
    def watch(self, job_ids: Iterable[str], *, any_: bool = False) -> Iterator[Waiter]:
        """Register before reading the store, so that a job finishing in between is not missed."""
        waiter = Waiter(job_ids, any_)
        watched = list(waiter.remaining)
        self.add(waiter, watched)
        try:
            yield waiter
        finally:
            self.discard(waiter, watched)

    def add(self, listener: _Listener, job_ids: Iterable[str]) -> None:
        by_job = self._by_job
        for job_id in job_ids:
            listeners = by_job.get(job_id)
            if listeners is None:
                by_job[job_id] = [listener]
            else:
                listeners.append(listener)

    def discard(self, listener: _Listener, job_ids: Iterable[str]) -> None:
        by_job = self._by_job
        for job_id in job_ids:
            listeners = by_job.get(job_id)
            if listeners is None:
                continue
            if len(listeners) == 1:
                if listeners[0] is listener:
                    del by_job[job_id]
            elif listener in listeners:
                listeners.remove(listener)

    def finished(self, job_ids: Iterable[str]) -> None:
        """These jobs reached a final state."""
        for job_id in job_ids:
            for listener in self._by_job.get(job_id, ()):
                listener.finished(job_id)


class StandingWatch:
    """One connection's watch over the jobs its result long polls ask about, kept from one poll to the next.

    `client.map` asks again and again about the same window of a thousand jobs, a few of them new each
    time. A job watched since a store read found it unfinished is known unfinished until this watch hears
    it finish, so a poll reads from the store only the jobs new to the window and those heard finishing
    (tens of rows instead of a thousand, and as many watch entries made). One poll uses it at a time
    (`busy`); the connection closes it when it ends."""

    def __init__(self, watch: FinishWatch) -> None:
        self._watch = watch
        self._watched: set[str] = set()
        self._ended: set[str] = set()  # watched jobs heard finishing
        self._woken = anyio.Event()
        self._since = 0.0
        self.busy = False

    def finished(self, job_id: str) -> None:
        self._ended.add(job_id)
        self._woken.set()

    def to_read(self, job_ids: Sequence[str]) -> list[str]:
        """Watch exactly `job_ids` from now on; returns those of them that must be read from the store (new
        to the watch, or heard finishing), in the order asked. Call it before reading them."""
        now = time.monotonic()
        if now - self._since > STANDING_REFRESH_S:
            self.close()
            self._since = now
        self._woken = anyio.Event()
        asked = set(job_ids)
        gone = self._watched - asked
        if gone:
            self._watch.discard(self, gone)
            self._watched -= gone
            self._ended -= gone
        new = asked - self._watched
        if new:
            self._watch.add(self, new)
            self._watched |= new
        if not new and not self._ended:
            return []
        want = new | self._ended
        return [j for j in job_ids if j in want]

    def read(self, asked: Sequence[str], returned: Sequence[str]) -> None:
        """What a read of `asked` returned (in order): those jobs have finished, and so may have those after
        the last one returned (a read stops early at its byte limit): both are read again while asked for."""
        if not returned:
            return
        self._ended.update(returned)
        self._ended.update(asked[asked.index(returned[-1]) + 1 :])

    def ended(self, job_ids: Sequence[str]) -> list[str]:
        """Those of `job_ids` heard finishing, in order (and the next finish wakes `wait` again)."""
        self._woken = anyio.Event()
        ended = self._ended
        return [j for j in job_ids if j in ended] if ended else []

    async def wait(self) -> None:
        """Until a watched job finishes (at once if one did since the last to_read)."""
        await self._woken.wait()

    def close(self) -> None:
        self._watch.discard(self, self._watched)
        self._watched, self._ended = set(), set()

"""The promoter: queues scheduled jobs (submit --at/--in) when their start time comes.

Rule: one task, asleep until the earliest start time the store knows (its jobs_scheduled index), woken
early when a job becomes scheduled (the ledger tells it: a submit, a release back to its time), so an idle
grid costs nothing and a job starts at its time, not at the next poll. Due jobs are promoted in batches,
one transaction each, like the lease reaper's. Its first pass runs as the broker starts: jobs whose time
came while the broker was down are queued then. A sleep is cut to MAX_SLEEP_S while a job is scheduled,
since sleeps run on the monotonic clock and start times on the wall clock, which may jump (a suspended
machine resumed, NTP stepping it): a job starts at most that much late.

Its step, `promote_due`, is public so that tests drive it with a fake clock instead of waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio
import structlog
from anyio.abc import TaskStatus

from gridd.broker.store import Store
from gridd.broker.transitions import Transition
from gridd.clock import Clock
from gridd.protocol.errors import GriddError

log = structlog.get_logger()

PROMOTE_BATCH = 500  # jobs queued per transaction: a promotion never holds the writer for long
MAX_SLEEP_S = 60.0
RETRY_AFTER_S = 1.0  # after the store failed


class Promoter:
    """Queues the scheduled jobs whose start time has come, and sleeps until the next one's."""

    def __init__(self, store: Store, clock: Clock, on_promoted: Callable[[Sequence[Transition]], None]) -> None:
        self._store = store
        self._clock = clock
        self._on_promoted = on_promoted  # the ledger's record: counts, events, the dispatcher's wake-up
        self._wake = anyio.Event()
        self.next_ms: int | None = None  # the earliest start time still ahead, as last read (None: none)

    def wake(self) -> None:
        """Look again: a job became scheduled, maybe for a time before the one slept until."""
        self._wake.set()

    async def promote_due(self) -> list[Transition]:
        """Queue every scheduled job whose start time has come, PROMOTE_BATCH a transaction; each batch is
        recorded as it commits. Updates `next_ms`."""
        now = self._clock.now_ms()
        promoted: list[Transition] = []
        while True:  # ends: each full batch takes jobs out of the scheduled ones, of which there are finitely many
            changed, self.next_ms = await self._store.promote_due(now, PROMOTE_BATCH)
            if changed:
                self._on_promoted(changed)
                promoted += changed
            if len(changed) < PROMOTE_BATCH:
                break
        if promoted:
            log.info("jobs.due", count=len(promoted), first=promoted[0].job_id, next_ms=self.next_ms)
        return promoted

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        started = False
        while True:
            self._wake = anyio.Event()  # replaced before the pass, so a wake during it is not lost
            delay = await self._pass()
            if not started:  # after the first pass: jobs due while the broker was down are queued by now
                task_status.started()
                started = True
            with anyio.move_on_after(delay):
                await self._wake.wait()

    async def _pass(self) -> float:
        """One promotion; returns how long to sleep before the next (inf: until woken)."""
        try:
            await self.promote_due()
        except GriddError as exc:
            log.error("promoter.failed", error=str(exc))
            return RETRY_AFTER_S
        if self.next_ms is None:
            return float("inf")
        return min(MAX_SLEEP_S, max(0.0, (self.next_ms - self._clock.now_ms()) / 1000))

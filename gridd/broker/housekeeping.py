"""What the broker removes once nobody needs it: finished jobs past their keep (purge), submit keys past
their TTL, and the lanes of queues that have no job left to lease.

Rule: a queue's lanes are never dropped while a submit or a retry is under way (`bringing`), since it may
be bringing that queue back; everything else the ledger's exact counts decide.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from gridd.broker.ledger import Ledger
from gridd.broker.matching import LaneBook
from gridd.broker.settings import BrokerSettings
from gridd.broker.store import Store
from gridd.clock import Clock
from gridd.protocol.errors import InvalidRequest

log = structlog.get_logger()

PURGE_BATCH = 500  # jobs removed per transaction: a purge never holds the writer for long
DROP_BATCH = 5000  # idle queues whose lanes are deleted per transaction
KEYS_BATCH = 5000  # expired submit keys removed per transaction


class Housekeeping:
    """Purge and lane dropping, run by `gridd purge` and the broker's maintenance task."""

    def __init__(self, store: Store, clock: Clock, settings: BrokerSettings, lanes: LaneBook, ledger: Ledger) -> None:
        self._store = store
        self._clock = clock
        self._keep_ms = settings.keep_ms
        self._lanes = lanes
        self._ledger = ledger
        self._bringing = 0  # submits and retries under way (see drop_idle_lanes)

    @contextmanager
    def bringing(self) -> Iterator[None]:
        """Around a submit or a retry: its queues' lanes must not be dropped meanwhile."""
        self._bringing += 1
        try:
            yield
        finally:
            self._bringing -= 1

    async def purge(self, older_than_ms: int | None = None) -> tuple[int, int]:
        """Remove the jobs that finished more than `older_than_ms` ago (None: the broker's keep), in
        batches of PURGE_BATCH jobs a transaction; returns how many, and the age used."""
        age = self._keep_ms if older_than_ms is None else older_than_ms
        if age is None:
            raise InvalidRequest(
                "this broker keeps finished jobs for ever (--keep never): say how old (--older-than 30d)"
            )
        cutoff = self._clock.now_ms() - age
        total = 0
        while True:  # ends: each round removes jobs, and there are finitely many
            removed = await self._store.purge_finished(cutoff, PURGE_BATCH)
            self._ledger.forget(removed)
            total += len(removed)
            if len(removed) < PURGE_BATCH:
                break
        if total:
            log.info("jobs.purged", count=total, older_than_s=age / 1000)
        return total, age

    async def forget_keys(self) -> int:
        """Remove the submit keys past their TTL (submit --key-ttl), in batches; returns how many."""
        now, total = self._clock.now_ms(), 0
        while True:  # ends: each round removes keys, and there are finitely many
            removed = await self._store.forget_keys(now, KEYS_BATCH)
            total += removed
            if removed < KEYS_BATCH:
                break
        if total:
            log.info("keys.forgotten", count=total)
        return total

    async def drop_idle_lanes(self) -> int:
        """Forget the lanes of queues with no job that could be leased now or later (none waiting,
        queued, held or running), in memory and in the store; returns how many queues. Skipped while a
        submit or a retry is under way, which may be bringing one of them back."""
        if self._bringing:
            return 0
        idle = self._ledger.idle_queues(self._lanes.queues())
        if not idle:
            return 0
        # Memory first, in the same step as the decision: a submit that starts after it adds its lanes back.
        self._lanes.drop(idle)
        for start in range(0, len(idle), DROP_BATCH):
            await self._store.drop_lanes(idle[start : start + DROP_BATCH])
        log.info("lanes.dropped", queues=len(idle), lanes_left=len(self._lanes))
        return len(idle)

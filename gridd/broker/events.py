"""The event hub: fans each batch of events out to every subscriber without ever waiting for one.

Rule: publish never blocks and never grows memory without bound. Each subscriber may have at most
`max_pending` events not yet taken by its session; one that falls further behind is dropped, and its
session tells it SLOW_CONSUMER. Other subscribers and the broker's own work never slow down for it.
A batch is what one store call changed (a submit of 10,000 jobs is one batch), so it travels as few
frames as its size allows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import anyio
import structlog

from gridd.protocol.messages import Event

log = structlog.get_logger()

DEFAULT_MAX_PENDING = 100_000


class Subscription:
    """The events published since subscribing, in order, for one consumer."""

    def __init__(self, max_pending: int) -> None:
        self._batches: deque[Sequence[Event]] = deque()
        self._pending = 0
        self._max = max_pending
        self._ready = anyio.Event()
        self.dropped = False
        # Called once when dropped: the consumer may be blocked elsewhere (on a full socket), not in
        # next_batch, and must hear of it there.
        self.on_drop: Callable[[], None] | None = None

    def offer(self, batch: Sequence[Event]) -> bool:
        """Queue a batch; False (and dropped) if it would put the consumer too far behind."""
        if self._pending + len(batch) > self._max:
            if not self.dropped and self.on_drop is not None:
                self.on_drop()
            self.dropped = True
        else:
            self._batches.append(batch)
            self._pending += len(batch)
        self._ready.set()
        return not self.dropped

    async def next_batch(self) -> Sequence[Event] | None:
        """The next batch, or None once the subscriber has been dropped."""
        while not self.dropped and not self._batches:
            await self._ready.wait()
            self._ready = anyio.Event()  # one consumer only, and it re-checks after replacing
        if self.dropped:
            return None
        batch = self._batches.popleft()
        self._pending -= len(batch)
        return batch


class EventHub:
    """Publish/subscribe of Event messages inside the broker."""

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self._max_pending = max_pending
        self._subscribers: set[Subscription] = set()
        self.dropped = 0  # subscribers dropped since start (metrics)

    @property
    def active(self) -> bool:
        """Whether anybody listens (publishers may skip building events otherwise)."""
        return bool(self._subscribers)

    @contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        """Every event published from now on, until the context ends or the subscriber falls behind."""
        subscription = Subscription(self._max_pending)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    def publish(self, events: Sequence[Event]) -> None:
        """Deliver to every subscriber that has room; drop the ones that do not."""
        if not events:
            return
        for subscription in list(self._subscribers):
            if not subscription.offer(events):
                self.dropped += 1
                log.warning("events.subscriber_dropped", max_pending=self._max_pending)
                self._subscribers.discard(subscription)

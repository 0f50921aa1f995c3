"""The event hub: fans each event out to every subscriber without ever waiting for one.

Rule: publish never blocks and never grows memory. Each subscriber has a bounded buffer; one that falls
behind is dropped (its stream is closed), and its session tells it SLOW_CONSUMER. Other subscribers and
the broker's own work never slow down for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from gridd.protocol.messages import Event

log = structlog.get_logger()


class EventHub:
    """Publish/subscribe of Event messages inside the broker."""

    def __init__(self, buffer: int = 10_000) -> None:
        self._buffer = buffer
        self._subscribers: dict[int, MemoryObjectSendStream[Event]] = {}
        self._next = 0

    @contextmanager
    def subscribe(self) -> Iterator[MemoryObjectReceiveStream[Event]]:
        """A stream of every event published from now on; it ends early if the subscriber fell behind."""
        tx, rx = anyio.create_memory_object_stream[Event](self._buffer)
        key = self._next
        self._next += 1
        self._subscribers[key] = tx
        try:
            with rx:
                yield rx
        finally:
            self._subscribers.pop(key, None)
            tx.close()

    def publish(self, events: Iterable[Event]) -> None:
        """Deliver to every subscriber that has room; drop the ones that do not."""
        if not self._subscribers:
            return
        for event in events:
            for key, tx in list(self._subscribers.items()):
                try:
                    tx.send_nowait(event)
                except anyio.WouldBlock:
                    log.warning("events.subscriber_dropped", buffer=self._buffer)
                    tx.close()
                    del self._subscribers[key]
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    del self._subscribers[key]

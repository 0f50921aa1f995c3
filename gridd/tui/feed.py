"""The event feed: connect, subscribe, forward the events; on any loss, say so and try again.

Rule: this is the dashboard's only reader of the event stream and the only writer of `link.client`.
It never touches widgets: it posts typed messages. Each (re)subscription starts with a snapshot, so
the dashboard resets its counts and reloads the rows it shows, and nothing missed while away lingers.
Events are posted in batches, at most one batch per `batch_every_s`: a burst of thousands of events
(a big submission) costs the screen a few updates, not one per event.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
from textual.message import Message

from gridd.client import connect
from gridd.client.backoff import Backoff
from gridd.protocol.errors import GriddError
from gridd.protocol.messages import Event
from gridd.tui.link import BrokerLink
from gridd.tui.messages import Connected, Disconnected, EventsArrived

Post = Callable[[Message], object]


class _Batcher:
    """Collects events as they are read; a flusher task posts them, in order, at a bounded rate."""

    def __init__(self, post: Post, every_s: float) -> None:
        self._post = post
        self._every_s = every_s
        self._events: list[Event] = []
        self._ready = anyio.Event()

    def add(self, event: Event) -> None:
        self._events.append(event)
        self._ready.set()

    def flush(self) -> None:
        if self._events:
            self._post(EventsArrived(self._events))
            self._events = []

    async def run(self) -> None:
        """Post as soon as events come, then at most once per `every_s` while they keep coming."""
        while True:
            await self._ready.wait()
            self._ready = anyio.Event()
            self.flush()
            await anyio.sleep(self._every_s)


class EventFeed:
    """Follows the broker's events until cancelled, reconnecting with exponential backoff."""

    def __init__(
        self,
        link: BrokerLink,
        post: Post,
        *,
        retry_first_s: float = 0.25,
        retry_max_s: float = 3.0,
        batch_every_s: float = 0.05,
    ) -> None:
        self._link = link
        self._post = post
        self._retry_first_s = retry_first_s
        self._retry_max_s = retry_max_s
        self._batch_every_s = batch_every_s
        self._connected_once = False  # did the last attempt get as far as a snapshot?

    async def run(self) -> None:
        """Loop forever: one connection at a time; returns only by cancellation."""
        backoff = Backoff(self._retry_first_s, self._retry_max_s)
        while True:
            address = self._link.resolve()
            self._connected_once = False
            try:
                await self._follow(address)
            except (GriddError, OSError) as exc:
                # GriddError covers ConnectionLost (broker gone), SlowConsumer (we fell behind),
                # AuthFailed and ShuttingDown: each is worth another try after a pause.
                reason = str(exc)
            else:
                reason = "the event stream ended"
            if self._connected_once:
                backoff.reset()  # it got as far as a snapshot: this loss starts the series again
            self._post(Disconnected(address, reason, backoff.next_delay_s))
            await backoff.wait()  # a series without a time limit: the dashboard waits for its broker

    async def _follow(self, address: str) -> None:
        async with connect(address, self._link.token, name="gridd-tui", insecure=self._link.insecure) as client:
            snapshot, events = await client.subscribe()
            self._link.client = client
            self._connected_once = True
            batcher = _Batcher(self._post, self._batch_every_s)
            error: GriddError | OSError | None = None
            try:
                self._post(Connected(client.connection.address, snapshot))  # of several, the one that answered
                async with anyio.create_task_group() as tg:
                    tg.start_soon(batcher.run)
                    try:
                        async for event in events:
                            batcher.add(event)
                    except (GriddError, OSError) as exc:
                        error = exc  # raised below, outside the task group (which would wrap it)
                    tg.cancel_scope.cancel()
                batcher.flush()  # what was read before the loss still applies
            finally:
                if self._link.client is client:  # a newer feed may already have connected
                    self._link.client = None
            if error is not None:
                raise error

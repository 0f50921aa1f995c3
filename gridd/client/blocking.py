"""The async Client driven from code that is not async: an anyio blocking portal, an event loop in a thread
of its own, runs each call. Same methods, same names, same errors; iterators step through the portal.

Rule: this is machinery, not a way in. `gridd.connect_sync` (client/sync.py) opens one of these and makes
it the current client of its `with` block; client/current.py opens the default one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from gridd.client.api import Client, connect
from gridd.client.handles import JobHandle
from gridd.client.taskdef import TaskDef

T = TypeVar("T")
R = TypeVar("R")


class SyncHandle(Generic[R]):
    """A job handle for code that is not async: `wait`, `cancel`, `result` block until done."""

    def __init__(self, portal: BlockingPortal, handle: JobHandle) -> None:
        self._portal = portal
        self._handle = handle
        self.id = handle.id

    def __repr__(self) -> str:
        return f"<{type(self._handle).__name__} {self.id}>"

    def wait(self) -> Any:
        return self._portal.call(self._handle.wait)

    def cancel(self) -> None:
        self._portal.call(self._handle.cancel)

    def result(self) -> R:
        return self._portal.call(self._handle.result)  # type: ignore[no-any-return]


class SyncClient:
    """Client's methods, blocking. Create it with `connect_sync(...)`."""

    def __init__(self, portal: BlockingPortal, client: Client) -> None:
        self._portal = portal
        self.client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """Every plain request of Client (submit, show, jobs, wait, cancel, status, ...), blocking."""
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._portal.call(lambda: method(*args, **kwargs))

        return call

    def submit_task(self, task: TaskDef[Any, R], /, *args: Any, **kwargs: Any) -> SyncHandle[R]:
        handle = self._portal.call(lambda: self.client.submit_task(task, *args, **kwargs))
        return SyncHandle(self._portal, handle)

    def handle(self, job_id: str, task: TaskDef[Any, Any] | None = None) -> SyncHandle[Any]:
        return SyncHandle(self._portal, self.client.handle(job_id, task))

    def map(
        self, task: TaskDef[Any, Any], records: Iterable[Any], *, batch: int = 100, ordered: bool = True
    ) -> Iterator[Any]:
        return self._iterate(self.client.map(task, records, batch=batch, ordered=ordered))

    def as_completed(self, job_ids: Sequence[str]) -> Iterator[Any]:
        return self._iterate(self.client.as_completed(job_ids))

    def follow_events(self) -> Iterator[Any]:
        return self._iterate(self.client.follow_events())

    def follow_output(self, job_id: str) -> Iterator[Any]:
        return self._iterate(self.client.follow_output(job_id))

    def _iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        async def step() -> tuple[bool, T | None]:
            try:
                return True, await items.__anext__()
            except StopAsyncIteration:
                return False, None

        try:
            while True:
                more, item = self._portal.call(step)
                if not more:
                    return
                yield item  # type: ignore[misc]
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(RuntimeError):  # the portal already stopped
                    self._portal.call(aclose)


@contextlib.contextmanager
def open_blocking(
    address: str | None = None, token: str | None = None, *, name: str | None = None, insecure: bool | None = None
) -> Iterator[SyncClient]:
    """A SyncClient on its own portal (as `connect` finds the broker); both end with the block."""
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(connect(address, token, name=name, insecure=insecure)) as client,
    ):
        yield SyncClient(portal, client)

"""The current client: the connection `task.submit(...)` and `task.map(...)` use, as no client is named there.

The only "current client" of gridd (STYLE 2.10 keeps global connections out everywhere else). Its rules:

- Set by `gridd.connect_sync(...)` (client/sync.py) for the body of its `with` block, and by nothing else.
  Blocks nest: the innermost is current; leaving it makes the outer one current again.
- It is held in a ContextVar, so it belongs to the thread (or asyncio task) that entered the block:
  another thread does not see it, nor does a thread started inside the block (a thread starts with an
  empty context). A thread that wants a connection of its own opens its own `with`.
- With no block current, the first `submit`/`map` opens the default client: one connection to the broker
  `connect()` finds without arguments (GRIDD_BROKER and GRIDD_TOKEN, the login file, else the local
  broker). It is opened once per process, under a lock, on first need only, shared by every thread that
  has no block of its own, and closed at interpreter exit (atexit). If opening it fails, the error is
  raised to that caller and the next one tries again.
- Async code does not use any of this: it names its client (`await client.submit_task(task, ...)`);
  the sugar would block its event loop while the portal's loop works.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar

from gridd.client.blocking import SyncClient, open_blocking

_innermost: ContextVar[SyncClient | None] = ContextVar("gridd_current_client", default=None)


def client() -> SyncClient:
    """The innermost `connect_sync` block of this context, else the process's default client."""
    found = _innermost.get()
    return found if found is not None else _DEFAULT.client()


@contextlib.contextmanager
def using(sync: SyncClient) -> Iterator[SyncClient]:
    """Make `sync` the current client for the block (connect_sync's `with`; it opened `sync` and closes it)."""
    token = _innermost.set(sync)
    try:
        yield sync
    finally:
        _innermost.reset(token)


class _Default:
    """The client of code that names none and is inside no `with`: opened on first need, closed at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # two threads' first submits open one connection, not two
        self._client: SyncClient | None = None

    def client(self) -> SyncClient:
        with self._lock:
            if self._client is None:
                opened = contextlib.ExitStack()
                self._client = opened.enter_context(open_blocking())
                atexit.register(opened.close)
            return self._client


_DEFAULT = _Default()

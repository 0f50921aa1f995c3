"""A thread of the store's own that runs blocking calls (a batch's SQL, an fsync) one at a time, in the order
they were given, each awaited by the task that gave it.

Why not anyio.to_thread.run_sync with a limiter of one: its limiter, cancel scope, future and pool queue cost
about twice the CPU of this hop, 40-50 µs a call against ~20 (5,000 calls of nothing, one after another;
`python -m benchmarks thread-hop` times anyio's), and the store makes one or two hops per batch. The thread
ends once it has had nothing to do for IDLE_S, and starts again at the next call, so a store that is closed
(or a test's) leaves no thread behind for long.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel
from anyio import RunFinishedError
from anyio.lowlevel import EventLoopToken

T = TypeVar("T")

IDLE_S = 10.0


class _Call(Generic[T]):
    __slots__ = ("fn", "token", "done", "result", "error")

    def __init__(self, fn: Callable[[], T], token: EventLoopToken) -> None:
        self.fn = fn
        self.token = token
        self.done = anyio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class CallThread:
    """One thread, started on demand, that runs the calls given to `run` in order."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._inbox: queue.SimpleQueue[_Call[Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running = False  # a thread is serving the inbox (or about to)

    async def run(self, fn: Callable[[], T]) -> T:
        """fn() in the thread; its result, or its exception raised here. If the awaiting task is cancelled,
        the call still runs to its end (its outcome is dropped): callers that must know shield the wait."""
        call = _Call(fn, anyio.lowlevel.current_token())
        with self._lock:
            self._inbox.put(call)
            if not self._running:
                self._running = True
                threading.Thread(target=self._serve, name=self._name, daemon=True).start()
        await call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]

    def _serve(self) -> None:
        while True:
            try:
                call = self._inbox.get(timeout=IDLE_S)
            except queue.Empty:
                with self._lock:  # a call put meanwhile is served: the check and the put share the lock
                    if self._inbox.empty():
                        self._running = False
                        return
                continue
            try:
                call.result = call.fn()
            except BaseException as exc:  # noqa: BLE001 - raised again in the awaiting task
                call.error = exc
            with contextlib.suppress(RunFinishedError):  # the loop is gone: nobody waits any more
                call.token.backend_class.run_sync_soon(call.done.set, (), call.token.native_token)
            del call  # nothing of a finished call is held while the thread waits

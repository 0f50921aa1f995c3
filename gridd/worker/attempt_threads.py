"""Threads that run the worker's command attempts, and the hand-off of each attempt's outcome to the
event loop that started it.

An attempt (spawn, wait, collect, clean up) is one blocking call. It runs in a thread of its own, taken
from those idle or started for it, and wakes its event loop once, when it is over: the loop spends one
wake-up per job, and no task, timer or limiter on the way there (anyio's to_thread costs several times
that per call, which a job of a millisecond notices). Threads are never shared while busy: an attempt
never waits behind another one's long job.
"""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable

import anyio
import anyio.lowlevel
import structlog
from anyio import RunFinishedError

from gridd.protocol.messages import JobResult, OutputChunk

__all__ = ["ATTEMPT_THREADS", "AttemptThreads", "Handoff"]

log = structlog.get_logger()

IDLE_THREAD_S = 10.0  # an attempt thread with nothing to do ends after this long


class Handoff:
    """One attempt's blocking call, run in an attempt thread; its outcome handed to the event loop that
    started it, which `done` wakes (set on that loop's thread). The call is given `hand`, to hand its
    result over as soon as it is known: what it does after that (removing the attempt's directory,
    closing its files, giving its user back) no longer holds up the job's slot."""

    def __init__(self, call: Callable[[Callable[[JobResult], None]], JobResult]) -> None:
        self._call = call
        self._token = anyio.lowlevel.current_token()
        self._context = contextvars.copy_context()
        self.done = anyio.Event()
        self._handed = False
        self._result: JobResult | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        """In the attempt's thread."""
        try:
            result = self._context.run(self._call, self.hand)
        except BaseException as exc:  # noqa: BLE001 - raised again on the loop, in the awaiting task
            if self._handed:  # in the clean-up after the result: the job's outcome stands
                log.error("attempt.cleanup_failed", error=repr(exc))
            else:
                self._handed, self._error = True, exc
                self._wake()
            return
        self.hand(result)

    def hand(self, result: JobResult) -> None:
        """In the attempt's thread: the result, once (a second call is ignored)."""
        if not self._handed:
            self._handed, self._result = True, result
            self._wake()

    def call_soon(self, call: Callable[[list[OutputChunk]], None], chunks: list[OutputChunk]) -> None:
        """In the attempt's thread: `call(chunks)` on the event loop's thread, soon."""
        with contextlib.suppress(RunFinishedError):
            self._token.backend_class.run_sync_soon(call, (chunks,), self._token.native_token)

    def _wake(self) -> None:
        with contextlib.suppress(RunFinishedError):  # the loop is gone: nobody waits any more
            self._token.backend_class.run_sync_soon(self.done.set, (), self._token.native_token)

    def outcome(self) -> JobResult:
        if self._error is not None:
            raise self._error
        assert self._result is not None  # noqa: S101 - set before done
        return self._result


class AttemptThreads:
    """Threads that run attempts, one per attempt under way; a thread whose attempt is over waits for
    the next one (IDLE_THREAD_S, then it ends). Each attempt gets a thread at once: there are never more
    than the jobs started (and those cancelled that are still cleaning up), and an attempt must never
    wait behind another one's long job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[Callable[[], None]]] = []

    def start(self, call: Callable[[], None]) -> None:
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(inbox,), name="gridd-attempt", daemon=True).start()
        inbox.put(call)

    def _serve(self, inbox: queue.SimpleQueue[Callable[[], None]]) -> None:
        while True:
            try:
                call = inbox.get(timeout=IDLE_THREAD_S)
            except queue.Empty:
                with self._lock:
                    if inbox in self._idle:  # else it was just taken: its call is on the way
                        self._idle.remove(inbox)
                        return
                continue
            call()
            with self._lock:
                self._idle.append(inbox)


ATTEMPT_THREADS = AttemptThreads()

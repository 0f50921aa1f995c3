"""Runs one attempt of a Python task job, and reports it as a JobResult like any other attempt.

Where a task runs is declared with it: `async def` tasks on the worker's event loop, plain ones in a
thread, `run="process"` ones in a pool of child processes (the only kind a timeout or a cancel can
stop midway; a thread runs on until its function returns, and its result is then dropped). Slots
bound them all: a worker with 8 slots runs 8 tasks at once, of any kind.

An attempt that raised has exit status 1, outcome `raised`, the exception in `error` and its
traceback as the job's stderr; one that returned has exit status 0 and its value, validated against
the task's annotation, in `value` (in a blob past INLINE_BYTES).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import importlib
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import anyio
import anyio.to_process
import msgspec

from gridd.client.blobs import INLINE_BYTES
from gridd.client.tasks import Task, find_task, tasks_of
from gridd.clock import Clock
from gridd.protocol.errors import ConfigError
from gridd.protocol.messages import MAX_BLOB_BYTES, JobResult, LeasedJob, TaskError


class Payloads(Protocol):
    """Where large arguments come from and large results go (the broker, through the agent)."""

    async def fetch(self, blob: str) -> bytes: ...

    async def store(self, data: bytes) -> str: ...


@dataclass(frozen=True, slots=True)
class TaskSettings:
    """The tasks this worker serves, the version of each module's code, and the process pool's bound."""

    tasks: dict[str, Task[Any, Any]]
    versions: dict[str, str]  # module -> version ("1.2.0" from __version__, else "sha256:" of its source)
    processes: anyio.CapacityLimiter

    @property
    def modules(self) -> list[str]:
        return sorted(self.versions)


def load_tasks(modules: list[str], slots: int) -> TaskSettings:
    """Import the task modules (from the current directory too, as `python -m` would); ConfigError if
    one cannot be imported or declares no task."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    tasks: dict[str, Task[Any, Any]] = {}
    versions: dict[str, str] = {}
    for name in dict.fromkeys(modules):
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - whatever it raised, the worker cannot serve it
            raise ConfigError(f"cannot import task module {name!r}: {type(exc).__name__}: {exc}") from None
        found = tasks_of(name)
        if not found:
            raise ConfigError(f"module {name!r} declares no task (decorate functions with @gridd.task)")
        tasks.update(found)
        versions[name] = code_version(module)
    return TaskSettings(tasks, versions, anyio.CapacityLimiter(slots))


def code_version(module: ModuleType) -> str:
    """The module's __version__, else a hash of its source file."""
    version = getattr(module, "__version__", None)
    if isinstance(version, str) and version:
        return version
    path = getattr(module, "__file__", None)
    if path is None:
        return "unknown"
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


async def run_task(job: LeasedJob, settings: TaskSettings, clock: Clock, payloads: Payloads) -> JobResult:
    """Run the task to its end or its timeout; cancelling this abandons it (see the module's rules).
    Its accounting is wall time only: it runs in the worker's own process (or its pool's), whose CPU and
    memory are not the task's alone, so CPU and max RSS stay None rather than be wrong."""
    began = time.monotonic()
    result = await _run_task(job, settings, clock, payloads)
    return msgspec.structs.replace(result, wall_ms=int((time.monotonic() - began) * 1000))


async def _run_task(job: LeasedJob, settings: TaskSettings, clock: Clock, payloads: Payloads) -> JobResult:
    call = job.spec.task
    assert call is not None  # noqa: S101 - the agent sends only task jobs here
    started = clock.now_ms()
    task = settings.tasks.get(call.name)
    if task is None:
        why = f"task {call.name} is not declared in the modules this worker serves ({', '.join(settings.modules)})"
        return _ended(job, started, clock, 127, "not_found", why)
    version = settings.versions.get(task.module, "")
    batch = call.records is not None
    try:
        payload = call.args if call.args_blob is None else await payloads.fetch(call.args_blob)
        with anyio.move_on_after(job.spec.timeout_s or float("inf")) as deadline:
            value = await _invoke(task, payload, batch, settings)
        if deadline.cancelled_caught:
            return _ended(job, started, clock, 124, "timed_out", f"timed out after {job.spec.timeout_s:g}s", version)
    except _Raised as raised:
        return _raised(job, started, clock, raised.error, version)
    except Exception as exc:  # noqa: BLE001 - what the task raised is its result
        return _raised(job, started, clock, task_error(exc, task.fn), version)
    if len(value) > MAX_BLOB_BYTES:
        why = f"the result is {len(value):,} bytes; at most {MAX_BLOB_BYTES:,} can travel"
        return _ended(job, started, clock, 1, "error", why, version)
    blob = await payloads.store(value) if len(value) > INLINE_BYTES else None
    return JobResult(
        job_id=job.job_id,
        lease=job.lease,
        exit_code=0,
        outcome="returned",
        started_ms=started,
        ended_ms=clock.now_ms(),
        value=b"" if blob else value,
        value_blob=blob,
        code=version,
    )


def task_error(exc: BaseException, fn: Any = None) -> TaskError:
    """An exception as it travels: qualified type, message, and the traceback from the task's own frame
    on (the whole of it if the task never ran, e.g. its arguments did not decode)."""
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    tb = exc.__traceback__
    code = getattr(fn, "__code__", None)
    while tb is not None and tb.tb_frame.f_code is not code:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(cls, exc, tb or exc.__traceback__))
    return TaskError(type=name, message=str(exc), traceback=text)


class _Raised(Exception):
    """A task raised in a child process; its error is already in travelling form."""

    def __init__(self, error: TaskError) -> None:
        super().__init__(error.message)
        self.error = error


async def _invoke(task: Task[Any, Any], payload: bytes, batch: bool, settings: TaskSettings) -> bytes:
    """Call the task on its arguments (or each record of a batch); returns the encoded value."""
    run = task.options.run
    if run == "process":
        ok, out = await anyio.to_process.run_sync(
            call_in_process, task.name, task.module, payload, batch, cancellable=True, limiter=settings.processes
        )
        if not ok:
            raise _Raised(msgspec.msgpack.decode(out, type=TaskError))
        return out
    if run == "async":
        if not batch:
            value = await task.fn(*task.decode_call(payload))
        elif task.options.batch:
            value = await task.fn(task.decode_records(payload))
        else:
            value = [await task.fn(record) for record in task.decode_records(payload)]
        return task.encode_value(value, batch=batch)
    return await _THREADS.run(_call_blocking, task, payload, batch)


_Call = Callable[[], bytes]


class _Threads:
    """The threads plain tasks run in: a thread per task running now, kept for the next ones.

    anyio's `to_thread.run_sync` costs ~50-75 us of CPU a call on this kind of machine (a limiter, a
    cancel scope, a future and a queue per call), about as much as the rest of a no-op task's path in
    the worker; a thread fed by a `SimpleQueue` that answers with one `call_soon_threadsafe` costs ~15.
    Slots bound how many run at once; a task abandoned at its timeout keeps its thread until it returns,
    and the next task then gets another thread, so it never waits for an abandoned one. Threads are
    daemons: a task that never returns does not hold the worker's exit. asyncio's, as the worker's loop is."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[bytes], _Call]] = (
            queue.SimpleQueue()
        )
        self._idle = 0  # threads waiting on the queue, or about to: each call takes one or starts one
        self._lock = threading.Lock()

    async def run(self, fn: Callable[..., bytes], *args: Any) -> bytes:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1
        self._calls.put((loop, future, functools.partial(fn, *args)))
        if start:
            threading.Thread(target=self._serve, name="gridd-task", daemon=True).start()
        return await future  # cancelled (a timeout, a revoked lease): the call runs on, its value is dropped

    def _serve(self) -> None:
        while True:
            loop, future, call = self._calls.get()
            try:
                outcome: tuple[bytes | None, BaseException | None] = (call(), None)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, which decides
                outcome = (None, exc)
            with self._lock:
                self._idle += 1
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, future, outcome)
            del loop, future, call, outcome  # nothing of a finished call is held while the thread waits


def _settle(future: asyncio.Future[bytes], outcome: tuple[bytes | None, BaseException | None]) -> None:
    if future.done():  # its task was cancelled meanwhile
        return
    value, error = outcome
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value or b"")


_THREADS = _Threads()


def _call_blocking(task: Task[Any, Any], payload: bytes, batch: bool) -> bytes:
    if not batch:
        value = task.fn(*task.decode_call(payload))
    elif task.options.batch:
        value = task.fn(task.decode_records(payload))
    else:
        value = [task.fn(record) for record in task.decode_records(payload)]
    return task.encode_value(value, batch=batch)


def call_in_process(name: str, module: str, payload: bytes, batch: bool) -> tuple[bool, bytes]:
    """In a pool process: import the task's module, run it, and return (True, value) or (False, error):
    only bytes cross the process boundary, so any exception travels, picklable or not."""
    task = None
    try:
        importlib.import_module(module)
        task = find_task(name)
        if task is None:
            raise LookupError(f"task {name} is not declared in module {module}")
        return True, _call_blocking(task, payload, batch)
    except Exception as exc:  # noqa: BLE001 - the caller turns it into the task's result
        return False, msgspec.msgpack.encode(task_error(exc, task.fn if task else None))


def _raised(job: LeasedJob, started: int, clock: Clock, error: TaskError, version: str) -> JobResult:
    return JobResult(
        job_id=job.job_id,
        lease=job.lease,
        exit_code=1,
        outcome="raised",
        started_ms=started,
        ended_ms=clock.now_ms(),
        stderr=error.traceback.encode(),
        message=f"{error.type}: {error.message}",
        error=error,
        code=version,
    )


def _ended(
    job: LeasedJob, started: int, clock: Clock, code: int, outcome: str, why: str, version: str = ""
) -> JobResult:
    return JobResult(
        job_id=job.job_id,
        lease=job.lease,
        exit_code=code,
        outcome=outcome,
        started_ms=started,
        ended_ms=clock.now_ms(),
        stderr=f"gridd: {why}\n".encode(),
        message=why,
        code=version,
    )

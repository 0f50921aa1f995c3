"""Runs one attempt of a job as a child process and reports how it ended, shell style.

Each attempt gets a fresh, empty working directory; stdout and stderr go to anonymous files (never
through the event loop), of which the first `max_output_bytes` are kept. The job runs in its own
session (process group), and the whole group is killed when the job ends, times out or is stopped, so
no child outlives its job. Processes are started and reaped from threads: it is the fastest way this machine allows
(DESIGN.md), and it keeps the event loop free.

An attempt can be suspended (its process group stopped with SIGSTOP) and continued (SIGCONT) through its
Pause; its `timeout_s` counts only the time it was not stopped.

Exit status is what a shell would report: the command's code, 128+N for signal N, 124 on timeout,
126 when the command cannot be executed, 127 when it is not found.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import anyio

from gridd.clock import Clock
from gridd.protocol.messages import JobResult, LeasedJob, OutputChunk

TERM_GRACE_S = 2.0
OUTPUT_EVERY_S = 0.5  # a running job's new output goes out this often (shorter jobs: with the result only)
# The worker's own secrets are not the job's business: a job that could read the cluster token could
# submit as anyone.
HIDDEN_ENV = frozenset({"GRIDD_TOKEN"})


@dataclass(frozen=True, slots=True)
class RunSettings:
    """What every attempt on this worker shares."""

    worker: str
    work_dir: Path
    max_output_bytes: int
    limiter: anyio.CapacityLimiter


class Pause:
    """Stops and continues one attempt's process group from the event loop's thread; the attempt's
    timeout clock stands still while it is stopped. Suspending before the process exists stops it as
    soon as it is spawned."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pgid: int | None = None
        self._since: float | None = None  # monotonic time it was stopped, None while it runs
        self._stopped_s = 0.0  # time spent stopped before `_since`

    @property
    def suspended(self) -> bool:
        return self._since is not None

    @property
    def pgid(self) -> int | None:
        """The attempt's process group, once spawned."""
        return self._pgid

    def suspend(self) -> None:
        with self._lock:
            if self._since is None:
                self._since = time.monotonic()
                if self._pgid is not None:
                    _kill_group(self._pgid, signal.SIGSTOP)

    def resume(self) -> None:
        with self._lock:
            if self._since is not None:
                self._stopped_s += time.monotonic() - self._since
                self._since = None
                if self._pgid is not None:
                    _kill_group(self._pgid, signal.SIGCONT)

    def attach(self, pgid: int) -> None:
        """The attempt's process group exists now."""
        with self._lock:
            self._pgid = pgid
            if self._since is not None:
                _kill_group(pgid, signal.SIGSTOP)

    def running_s(self, since: float) -> float:
        """Seconds since monotonic time `since`, less the time spent stopped."""
        with self._lock:
            now = time.monotonic()
            stopped = self._stopped_s + (now - self._since if self._since is not None else 0.0)
        return now - since - stopped


async def run_attempt(
    job: LeasedJob,
    settings: RunSettings,
    clock: Clock,
    on_output: Callable[[list[OutputChunk]], None] | None = None,
    pause: Pause | None = None,
    *,
    setup: Callable[[Path], None] | None = None,
) -> JobResult:
    """Run the job to its end (or its timeout); cancelling this kills the job's process group.
    `setup` (blocking) fills the fresh working directory before the job starts (a bundle's files).

    The whole attempt (spawn, wait, timeout, collect, clean up) is one blocking call in one thread:
    one hop per job instead of four, which matters when jobs take milliseconds. While it runs longer
    than OUTPUT_EVERY_S, what it writes is handed to `on_output` every OUTPUT_EVERY_S."""
    attempt = _Attempt(job, settings, clock, pause or Pause(), setup)
    async with anyio.create_task_group() as tg:
        if on_output is not None:
            tg.start_soon(_follow, attempt, on_output, settings.limiter)
        try:
            result = await anyio.to_thread.run_sync(attempt.run, abandon_on_cancel=True, limiter=settings.limiter)
        except anyio.get_cancelled_exc_class():
            attempt.stop()  # the thread then reaps the process and cleans up on its own
            raise
        tg.cancel_scope.cancel()
    return result


async def _follow(
    attempt: _Attempt, on_output: Callable[[list[OutputChunk]], None], limiter: anyio.CapacityLimiter
) -> None:
    while True:
        await anyio.sleep(OUTPUT_EVERY_S)
        chunks = await anyio.to_thread.run_sync(attempt.new_output, limiter=limiter)
        if chunks:
            on_output(chunks)


class _Attempt:
    """One attempt's blocking work, and a way to stop it from the event loop's thread."""

    def __init__(
        self,
        job: LeasedJob,
        settings: RunSettings,
        clock: Clock,
        pause: Pause,
        setup: Callable[[Path], None] | None = None,
    ) -> None:
        self._job = job
        self._pause = pause
        self._setup = setup
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopped = False
        self._files: dict[str, IO[bytes]] = {}  # open while the job runs
        self._sent = {"stdout": 0, "stderr": 0}

    def new_output(self) -> list[OutputChunk]:
        """What the job wrote since the last call (up to the kept size), as chunks."""
        chunks = []
        limit = self._settings.max_output_bytes
        with self._lock:
            for stream, f in self._files.items():
                start = self._sent[stream]
                end = min(os.fstat(f.fileno()).st_size, limit)
                if end > start:
                    data = os.pread(f.fileno(), end - start, start)
                    self._sent[stream] = start + len(data)
                    chunks.append(
                        OutputChunk(
                            job_id=self._job.job_id, lease=self._job.lease, stream=stream, offset=start, data=data
                        )
                    )
        return chunks

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            proc = self._proc
        if proc is not None:
            _kill_group(proc.pid, signal.SIGKILL)

    def run(self) -> JobResult:
        job, scratch = self._job, self._settings.work_dir
        cwd = scratch / f"{job.job_id}.{job.lease}"
        started = self._clock.now_ms()
        # Output goes to anonymous files (O_TMPFILE where the system has it): nothing to name or unlink.
        with tempfile.TemporaryFile(dir=scratch) as out, tempfile.TemporaryFile(dir=scratch) as err:
            with self._lock:
                self._files = {"stdout": out, "stderr": err}
            try:
                return self._run_in(cwd, out, err, started)
            finally:
                with self._lock:  # new_output must not read them once they close
                    self._files = {}
                _remove(cwd)

    def _run_in(self, cwd: Path, out: IO[bytes], err: IO[bytes], started: int) -> JobResult:
        job, limit = self._job, self._settings.max_output_bytes
        try:
            cwd.mkdir(parents=True)
        except OSError as exc:
            return self._not_started(None, "error", f"cannot make the working directory {cwd}: {exc.strerror}", started)
        if self._setup is not None:
            try:
                self._setup(cwd)
            except OSError as exc:
                return self._not_started(None, "error", f"cannot fill the working directory {cwd}: {exc}", started)
        try:
            proc = _spawn(job, cwd, self._settings.worker, out, err)
        except OSError as exc:
            code, outcome = _spawn_failure(exc)
            return self._not_started(code, outcome, f"{job.spec.argv[0]}: {exc.strerror or exc}", started)
        spawned = time.monotonic()
        self._pause.attach(proc.pid)
        with self._lock:
            self._proc = proc
            stopped = self._stopped
        if stopped:
            _kill_group(proc.pid, signal.SIGKILL)
        timed_out = False
        try:
            timed_out = not self._wait_within_timeout(proc, spawned)
            if timed_out:
                self._pause.resume()  # a stopped process would not see the SIGTERM
                _kill_group(proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=TERM_GRACE_S)
        finally:
            _kill_group(proc.pid, signal.SIGKILL)  # stragglers the job left behind, or all of it
            proc.wait()
        ended = self._clock.now_ms()
        (stdout, stdout_cut), (stderr, stderr_cut) = _read_head(out, limit), _read_head(err, limit)
        return _result(job, proc.returncode, timed_out, started, ended, stdout, stdout_cut, stderr, stderr_cut)

    def _wait_within_timeout(self, proc: subprocess.Popen[bytes], spawned: float) -> bool:
        """Wait for the process; False if it ran (not counting time stopped) past the job's timeout."""
        limit = self._job.spec.timeout_s
        if limit is None:
            proc.wait()
            return True
        while (left := limit - self._pause.running_s(spawned)) > 0:
            try:
                proc.wait(timeout=left)
                return True
            except subprocess.TimeoutExpired:
                continue  # time it spent stopped does not count: look again
        return False

    def _not_started(self, code: int | None, outcome: str, why: str, started: int) -> JobResult:
        job = self._job
        return JobResult(
            job_id=job.job_id,
            lease=job.lease,
            exit_code=code,
            outcome=outcome,
            started_ms=started,
            ended_ms=self._clock.now_ms(),
            stderr=f"gridd: {why}\n".encode(),
            message=why,
        )


def _result(
    job: LeasedJob,
    rc: int,
    timed_out: bool,
    started: int,
    ended: int,
    stdout: bytes,
    stdout_cut: bool,
    stderr: bytes,
    stderr_cut: bool,
) -> JobResult:
    if timed_out:
        code, outcome, message = 124, "timed_out", f"timed out after {job.spec.timeout_s:g}s"
    elif rc < 0:
        code, outcome, message = 128 - rc, "signalled", f"killed by signal {_signal_name(-rc)}"
    else:
        code, outcome, message = rc, "exited", ("" if rc == 0 else f"exited with status {rc}")
    return JobResult(
        job_id=job.job_id,
        lease=job.lease,
        exit_code=code,
        outcome=outcome,
        started_ms=started,
        ended_ms=ended,
        stdout=stdout,
        stderr=stderr,
        stdout_truncated=stdout_cut,
        stderr_truncated=stderr_cut,
        message=message,
    )


def _spawn(job: LeasedJob, cwd: Path, worker: str, out: IO[bytes], err: IO[bytes]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in HIDDEN_ENV}
    env.update(job.spec.env)
    env.update(GRIDD_JOB_ID=job.job_id, GRIDD_ATTEMPT=str(job.attempt), GRIDD_WORKER=worker)
    if job.spec.stdin is None:
        return _popen(job.spec.argv, cwd, env, subprocess.DEVNULL, out, err)
    with tempfile.TemporaryFile(dir=cwd.parent) as stdin:
        stdin.write(job.spec.stdin)
        stdin.seek(0)
        return _popen(job.spec.argv, cwd, env, stdin, out, err)


def _popen(
    argv: list[str], cwd: Path, env: dict[str, str], stdin: IO[bytes] | int, out: IO[bytes], err: IO[bytes]
) -> subprocess.Popen[bytes]:
    # Its own session: the job's whole process group can be stopped at once.
    return subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=stdin, stdout=out, stderr=err, start_new_session=True, close_fds=True
    )


def _spawn_failure(exc: OSError) -> tuple[int, str]:
    if isinstance(exc, FileNotFoundError):
        return 127, "not_found"
    if isinstance(exc, PermissionError) or exc.errno in (errno.ENOEXEC, errno.EACCES, errno.EISDIR):
        return 126, "not_executable"
    return 126, "error"


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _remove(cwd: Path) -> None:
    """Remove the attempt's working directory: with one rmdir when the job left it empty."""
    try:
        os.rmdir(cwd)
    except FileNotFoundError:
        pass
    except OSError:
        shutil.rmtree(cwd, ignore_errors=True)


def _read_head(f: IO[bytes], limit: int) -> tuple[bytes, bool]:
    """The first `limit` bytes the job wrote, and whether it wrote more."""
    f.seek(0)
    data = f.read(limit + 1)
    return (data[:limit], True) if len(data) > limit else (data, False)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)

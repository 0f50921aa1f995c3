"""Runs one attempt of a job as a child process and reports how it ended, shell style.

Each attempt gets a fresh, empty working directory; stdout and stderr are pipes that the attempt's thread
drains (never through the event loop) into anonymous spool files, keeping the first `max_output_bytes`
of each and dropping the rest as it arrives: the job never blocks on a full pipe, and however much it
writes, the worker's disk holds at most that much per stream (the result says it was truncated). The job runs in its own
session (process group), and the whole group is killed when the job ends, times out or is stopped, so
no child outlives its job. Processes are started and reaped from threads: it is the fastest way this machine allows
(DESIGN.md), and it keeps the event loop free.

An attempt can be suspended (its process group stopped with SIGSTOP) and continued (SIGCONT) through its
Pause; its `timeout_s` counts only the time it was not stopped.

Exit status is what a shell would report: the command's code, 128+N for signal N, 124 on timeout,
126 when the command cannot be executed, 127 when it is not found.

Who the job runs as (gridd.worker.job_users): with job users, its directory is made 0700 and handed to
its user (after `setup` filled it), its process starts as that user, and the user is given back when
the attempt's thread is done with it, whether the attempt ended or was cancelled. The output spool
files are the worker's, unnamed: the job writes to pipes, and no job can reach another's output.
A job's environment is the worker's without any GRIDD_* variable (the worker's credential and settings
are not the job's business), plus the job user's HOME/USER/LOGNAME, the job's own --env, and
GRIDD_JOB_ID, GRIDD_ATTEMPT, GRIDD_WORKER.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import anyio
import msgspec

from gridd.clock import Clock
from gridd.protocol.messages import JobResult, LeasedJob, OutputChunk
from gridd.worker import host_os
from gridd.worker.attempt_dirs import attempt_dirs
from gridd.worker.attempt_threads import ATTEMPT_THREADS, Handoff
from gridd.worker.host_os import ExitWatch, JobProcess, JobUser, Spool
from gridd.worker.job_users import JobUsers
from gridd.worker.pause import Pause

__all__ = ["OUTPUT_EVERY_S", "Pause", "RunSettings", "run_attempt"]

TERM_GRACE_S = 2.0
DRAIN_S = 0.5  # after the job's group is gone: how long output still in flight may take to arrive
OUTPUT_EVERY_S = 0.5  # a running job's new output goes out this often (shorter jobs: with the result only)
# The worker's settings and secrets (GRIDD_TOKEN, and whatever else a GRIDD_ variable holds) are not the
# job's business: a job that could read the worker's credential could act as the worker.
HIDDEN_ENV_PREFIX = "GRIDD_"


@dataclass(frozen=True, slots=True)
class RunSettings:
    """What every attempt on this worker shares."""

    worker: str
    work_dir: Path
    max_output_bytes: int
    users: JobUsers | None = None  # None: jobs run as the worker's own user


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

    The whole attempt (spawn, wait, timeout, collect, clean up) is one blocking call in a thread of its
    own (ATTEMPT_THREADS), which wakes this task once, when it is over: no task, timer or thread hop per
    job beyond that, which matters when jobs take a millisecond. A job still running after
    OUTPUT_EVERY_S has what it wrote handed to `on_output` (on this loop) every OUTPUT_EVERY_S, by the
    attempt's thread, which reads it anyway."""
    attempt = _Attempt(job, settings, clock, pause or Pause(), setup)
    handoff = Handoff(attempt.run)
    if on_output is not None:
        attempt.follow(lambda chunks: handoff.call_soon(on_output, chunks))
    ATTEMPT_THREADS.start(handoff.run)
    try:
        await handoff.done.wait()
    except anyio.get_cancelled_exc_class():
        attempt.stop()  # the thread then reaps the process and cleans up on its own
        raise
    return handoff.outcome()


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
        self._proc: JobProcess | None = None
        self._stopped = False
        self._spools: list[Spool] = []  # stdout's and stderr's, while the job runs
        self._sent = {"stdout": 0, "stderr": 0}
        self._hand: Callable[[JobResult], None] = _keep
        self._on_chunks: Callable[[list[OutputChunk]], None] | None = None

    def new_output(self) -> list[OutputChunk]:
        """What the job wrote since the last call (up to the kept size), as chunks."""
        chunks = []
        limit = self._settings.max_output_bytes
        with self._lock:
            for stream, spool in zip(("stdout", "stderr"), self._spools, strict=False):
                start = self._sent[stream]
                end = min(spool.kept, limit)
                if end > start:
                    data = spool.read(start, end)
                    self._sent[stream] = start + len(data)
                    chunks.append(
                        OutputChunk(
                            job_id=self._job.job_id, lease=self._job.lease, stream=stream, offset=start, data=data
                        )
                    )
        return chunks

    def follow(self, on_chunks: Callable[[list[OutputChunk]], None]) -> None:
        """While the job runs, pass what it wrote to `on_chunks` every OUTPUT_EVERY_S (from its thread)."""
        self._on_chunks = on_chunks

    def _pass_output(self) -> None:
        chunks = self.new_output()
        if chunks and self._on_chunks is not None:
            self._on_chunks(chunks)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            proc = self._proc
        if proc is not None:
            host_os.kill_group(proc.pid)

    def run(self, hand: Callable[[JobResult], None] | None = None) -> JobResult:
        """The attempt, start to clean-up; `hand` is given the result as soon as it is known (before the
        clean-up), and it is returned at the end as well."""
        if hand is not None:
            self._hand = hand
        users = self._settings.users
        if users is None:
            return self._run_as(None)
        user = users.take()
        if user is None:
            why = "no --run-as-pool user came free (each is held until its last job's processes are gone)"
            return self._not_started(None, "error", why, self._clock.now_ms())
        try:
            return self._run_as(user)
        finally:
            users.give_back(user)  # a pool user's leftover processes are killed first

    def _run_as(self, user: JobUser | None) -> JobResult:
        job, scratch = self._job, self._settings.work_dir
        cwd = scratch / f"{job.job_id}.{job.lease}"
        started = self._clock.now_ms()
        limit = self._settings.max_output_bytes
        spools: list[Spool] = []
        try:
            for _ in ("stdout", "stderr"):
                spools.append(Spool(lambda: _anonymous_file(scratch), limit))
            with self._lock:
                self._spools = spools
            return self._run_spooled(cwd, spools, started, user)
        finally:
            with self._lock:  # new_output must not read them once they close
                self._spools = []
            for spool in spools:
                spool.close()
            attempt_dirs(scratch).done(cwd, keep=user is None or host_os.is_self(user))

    def _run_spooled(self, cwd: Path, spools: list[Spool], started: int, user: JobUser | None) -> JobResult:
        job = self._job
        try:
            attempt_dirs(self._settings.work_dir).make(cwd)
        except OSError as exc:
            return self._not_started(None, "error", f"cannot make the working directory {cwd}: {exc.strerror}", started)
        try:
            if self._setup is not None:
                self._setup(cwd)
            if user is not None:
                host_os.hand_over(cwd, user)
        except OSError as exc:
            return self._not_started(None, "error", f"cannot fill the working directory {cwd}: {exc}", started)
        began = time.monotonic()  # before the spawn: the wall time covers all of the job's life
        try:
            proc = _spawn(job, cwd, self._settings.worker, spools[0].write_end, spools[1].write_end, user)
        except OSError as exc:
            code, outcome = host_os.spawn_failure(exc)
            return self._not_started(code, outcome, f"{job.spec.argv[0]}: {exc.strerror or exc}", started)
        finally:
            for spool in spools:
                spool.spawned()  # only the job holds the write ends now: its exit is their EOF
        spawned = time.monotonic()
        self._pause.attach(proc.pid)
        with self._lock:
            self._proc = proc
            stopped = self._stopped
        if stopped:
            host_os.kill_group(proc.pid)
        timed_out = False
        with ExitWatch(proc) as exited:
            try:
                limit = self._job.spec.timeout_s
                # Time it spent stopped does not count toward its timeout.
                timed_out = not exited.pump(
                    spools,
                    None if limit is None else lambda: limit - self._pause.running_s(spawned),
                    self._pass_output,
                    OUTPUT_EVERY_S,
                )
                if timed_out:
                    self._pause.resume()  # a stopped process would not see the SIGTERM
                    host_os.terminate_group(proc.pid)
                    grace = time.monotonic() + TERM_GRACE_S
                    exited.pump(spools, lambda: grace - time.monotonic(), self._pass_output, OUTPUT_EVERY_S)
            finally:
                host_os.kill_group(proc.pid)  # stragglers the job left behind, or all of it
                usage = host_os.reap(proc)
        wall_ms = int((time.monotonic() - began) * 1000)
        host_os.drain(spools, time.monotonic() + DRAIN_S)
        ended = self._clock.now_ms()
        (stdout, stdout_cut), (stderr, stderr_cut) = spools[0].head(), spools[1].head()
        result = _result(job, usage.returncode, timed_out, started, ended, stdout, stdout_cut, stderr, stderr_cut)
        result = msgspec.structs.replace(
            result,
            wall_ms=wall_ms,
            cpu_user_s=usage.cpu_user_s,
            cpu_system_s=usage.cpu_system_s,
            max_rss_kb=usage.max_rss_kb,
            output_bytes=spools[0].total + spools[1].total,
        )
        self._hand(result)  # its group is gone and its output read: the rest is the worker's tidying
        return result

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
    else:
        code, signal_name = host_os.exit_status(rc)
        if signal_name is not None:
            outcome, message = "signalled", f"killed by signal {signal_name}"
        else:
            outcome, message = "exited", ("" if rc == 0 else f"exited with status {rc}")
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


def _spawn(job: LeasedJob, cwd: Path, worker: str, out: int, err: int, user: JobUser | None) -> JobProcess:
    env = _worker_env()
    if user is not None:
        env.update(user.env())
    env.update(job.spec.env)
    env.update(GRIDD_JOB_ID=job.job_id, GRIDD_ATTEMPT=str(job.attempt), GRIDD_WORKER=worker)
    if job.spec.stdin is None:
        return host_os.spawn(job.spec.argv, cwd, env, None, out, err, user)
    # Unnamed, the worker's: the job reads it through the descriptor it is given, and no other job can.
    with tempfile.TemporaryFile(dir=cwd.parent) as stdin:
        stdin.write(job.spec.stdin)
        stdin.seek(0)
        return host_os.spawn(job.spec.argv, cwd, env, stdin, out, err, user)


_env_seen: dict[bytes, bytes] | None = None  # os.environ's raw contents when _env_kept was made
_env_kept: dict[str, str] = {}
_env_lock = threading.Lock()


def _worker_env() -> dict[str, str]:
    """A copy of the worker's environment without its GRIDD_* variables. Made again only when the
    environment changed: os.environ's raw bytes compare in a fraction of a microsecond, against tens
    of microseconds to decode and filter every variable for every job."""
    global _env_seen, _env_kept  # noqa: PLW0603 - the process's one environment, cached
    raw: dict[bytes, bytes] | None = getattr(os.environ, "_data", None)  # CPython's POSIX os.environ
    with _env_lock:
        if raw is None or raw != _env_seen:
            _env_kept = {k: v for k, v in os.environ.items() if not k.startswith(HIDDEN_ENV_PREFIX)}
            _env_seen = None if raw is None else dict(raw)
        return dict(_env_kept)


def _anonymous_file(scratch: Path) -> IO[bytes]:
    """A file with no name (O_TMPFILE where the system has it): nothing to unlink, no other job can open it."""
    return tempfile.TemporaryFile(dir=scratch)


def _keep(result: JobResult) -> None:
    """No early hand-over: the result is returned at the end."""

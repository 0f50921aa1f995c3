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

import contextlib
import errno
import os
import resource
import select
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
import msgspec

from gridd.clock import Clock
from gridd.protocol.messages import JobResult, LeasedJob, OutputChunk
from gridd.worker.job_users import JobUser, JobUsers

TERM_GRACE_S = 2.0
DRAIN_S = 0.5  # after the job's group is gone: how long output still in flight may take to arrive
_EXIT_POLL_S = 0.05  # how often the exit is checked where the system has no pidfd
_READ_BYTES = 65536
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
    limiter: anyio.CapacityLimiter
    users: JobUsers | None = None  # None: jobs run as the worker's own user


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
        # Output goes to anonymous files (O_TMPFILE where the system has it): nothing to name or unlink.
        with tempfile.TemporaryFile(dir=scratch) as out, tempfile.TemporaryFile(dir=scratch) as err:
            with self._lock:
                self._files = {"stdout": out, "stderr": err}
            try:
                return self._run_in(cwd, out, err, started, user)
            finally:
                with self._lock:  # new_output must not read them once they close
                    self._files = {}
                _remove(cwd)

    def _run_in(self, cwd: Path, out: IO[bytes], err: IO[bytes], started: int, user: JobUser | None) -> JobResult:
        limit = self._settings.max_output_bytes
        spools = [_Spool(out, limit), _Spool(err, limit)]
        try:
            return self._run_spooled(cwd, spools, started, user)
        finally:
            for spool in spools:
                spool.close()

    def _run_spooled(self, cwd: Path, spools: list[_Spool], started: int, user: JobUser | None) -> JobResult:
        job = self._job
        try:
            cwd.mkdir(mode=0o700)
        except OSError as exc:
            return self._not_started(None, "error", f"cannot make the working directory {cwd}: {exc.strerror}", started)
        try:
            if self._setup is not None:
                self._setup(cwd)
            if user is not None:
                _hand_over(cwd, user)
        except OSError as exc:
            return self._not_started(None, "error", f"cannot fill the working directory {cwd}: {exc}", started)
        began = time.monotonic()  # before the spawn: the wall time covers all of the job's life
        try:
            proc = _spawn(job, cwd, self._settings.worker, spools[0].write_end, spools[1].write_end, user)
        except OSError as exc:
            code, outcome = _spawn_failure(exc)
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
            _kill_group(proc.pid, signal.SIGKILL)
        timed_out = False
        with _Exit(proc) as exited:
            try:
                limit = self._job.spec.timeout_s
                # Time it spent stopped does not count toward its timeout.
                timed_out = not exited.pump(
                    spools, None if limit is None else lambda: limit - self._pause.running_s(spawned)
                )
                if timed_out:
                    self._pause.resume()  # a stopped process would not see the SIGTERM
                    _kill_group(proc.pid, signal.SIGTERM)
                    grace = time.monotonic() + TERM_GRACE_S
                    exited.pump(spools, lambda: grace - time.monotonic())
            finally:
                _kill_group(proc.pid, signal.SIGKILL)  # stragglers the job left behind, or all of it
                usage = _reap(proc)
        wall_ms = int((time.monotonic() - began) * 1000)
        _drain(spools, time.monotonic() + DRAIN_S)
        ended = self._clock.now_ms()
        (stdout, stdout_cut), (stderr, stderr_cut) = spools[0].head(), spools[1].head()
        result = _result(job, proc.returncode, timed_out, started, ended, stdout, stdout_cut, stderr, stderr_cut)
        return msgspec.structs.replace(
            result,
            wall_ms=wall_ms,
            cpu_user_s=round(usage.ru_utime, 3),
            cpu_system_s=round(usage.ru_stime, 3),
            max_rss_kb=usage.ru_maxrss,  # KiB on Linux
            output_bytes=spools[0].total + spools[1].total,
        )

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


def _reap(proc: subprocess.Popen[bytes]) -> resource.struct_rusage:
    """Reap the job's process with wait4: its own rusage, not the worker's children's in all (other jobs
    run at the same time). It counts the job's process and the descendants it waited for; a grandchild
    the job left behind (killed with its group) is reaped by init and counts nowhere. Its max RSS is
    never below the worker's own peak at the spawn: Linux carries the forked copy's peak across exec."""
    while True:
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except InterruptedError:
            continue
        proc.returncode = os.waitstatus_to_exitcode(status)
        return usage


def _spawn(job: LeasedJob, cwd: Path, worker: str, out: int, err: int, user: JobUser | None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(HIDDEN_ENV_PREFIX)}
    if user is not None:
        env.update(user.env())
    env.update(job.spec.env)
    env.update(GRIDD_JOB_ID=job.job_id, GRIDD_ATTEMPT=str(job.attempt), GRIDD_WORKER=worker)
    if job.spec.stdin is None:
        return _popen(job.spec.argv, cwd, env, subprocess.DEVNULL, out, err, user)
    # Unnamed, the worker's: the job reads it through the descriptor it is given, and no other job can.
    with tempfile.TemporaryFile(dir=cwd.parent) as stdin:
        stdin.write(job.spec.stdin)
        stdin.seek(0)
        return _popen(job.spec.argv, cwd, env, stdin, out, err, user)


def _popen(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    stdin: IO[bytes] | int,
    out: int,
    err: int,
    user: JobUser | None,
) -> subprocess.Popen[bytes]:
    # Its own session: the job's whole process group can be stopped at once. As another user: in the
    # child before exec, setgroups to exactly the user's groups, then setgid, then setuid.
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=stdin,
        stdout=out,
        stderr=err,
        start_new_session=True,
        close_fds=True,
        user=None if user is None else user.uid,
        group=None if user is None else user.gid,
        extra_groups=None if user is None else list(user.groups),
    )


def _hand_over(cwd: Path, user: JobUser) -> None:
    """Give the attempt's directory and all in it (a bundle's copy) to the job's user. Bottom up: until
    the top is handed over, the worker alone can enter it, so nothing in it changes under the walk."""
    for root, dirs, files in os.walk(cwd, topdown=False):
        for name in (*files, *dirs):
            os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)
    os.chown(cwd, user.uid, user.gid)
    os.chmod(cwd, 0o700)


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


class _Spool:
    """One output stream of an attempt: a pipe the job writes, drained into `file` up to `limit` bytes.
    Past the limit what arrives is read and dropped (`cut`), so the job never blocks on a full pipe."""

    def __init__(self, file: IO[bytes], limit: int) -> None:
        self.file = file
        self.limit = limit
        self.kept = 0
        self.total = 0  # all it wrote, kept or not
        self.cut = False
        self.fd, self.write_end = os.pipe()
        os.set_blocking(self.fd, False)
        self.open = True

    def spawned(self) -> None:
        """The job has its copy of the write end (or failed to start): ours goes."""
        if self.write_end >= 0:
            os.close(self.write_end)
            self.write_end = -1

    def pump(self) -> None:
        """Move what the pipe holds now into the file (up to the limit); `open` turns False at its end."""
        for _ in range(16):  # a bounded turn: the other stream and the exit are looked at in between
            try:
                data = os.read(self.fd, _READ_BYTES)
            except BlockingIOError:
                return
            if not data:
                self.open = False
                return
            self.total += len(data)
            room = self.limit - self.kept
            if room > 0:
                # Written past the file object's buffer: new_output's fstat sees it at once.
                os.write(self.file.fileno(), data[:room])
                self.kept += min(room, len(data))
            self.cut = self.cut or len(data) > room

    def head(self) -> tuple[bytes, bool]:
        """The first `limit` bytes the job wrote, and whether it wrote more."""
        return os.pread(self.file.fileno(), self.kept, 0), self.cut

    def close(self) -> None:
        self.spawned()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Exit:
    """Waits for a process while draining its output pipes; with a pidfd (Linux 5.3+) the exit wakes the
    wait at once, else it is looked at every _EXIT_POLL_S."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self._pidfd = -1

    def __enter__(self) -> _Exit:
        with contextlib.suppress(AttributeError, OSError):
            self._pidfd = os.pidfd_open(self._proc.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)

    def pump(self, spools: list[_Spool], left: Callable[[], float] | None) -> bool:
        """Drain `spools` until the process exits (True) or `left()` seconds run out first (False)."""
        while not self._exited():
            wait_s = 1.0 if self._pidfd >= 0 else _EXIT_POLL_S
            if left is not None:
                remaining = left()
                if remaining <= 0:
                    return False
                # Looked at again at least every second: a stopped job's clock stands still meanwhile.
                wait_s = min(wait_s, remaining)
            _poll(spools, wait_s, self._pidfd)
        return True

    def _exited(self) -> bool:
        """Whether the process has exited, leaving it unreaped (WNOWAIT): _reap's wait4 takes its rusage."""
        info = os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return info is not None and info.si_pid != 0


def _poll(spools: list[_Spool], wait_s: float, also: int = -1) -> None:
    """Wait up to `wait_s` for output (or for `also` to be readable), and move what came."""
    poller = select.poll()
    by_fd = {s.fd: s for s in spools if s.open}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    if also >= 0:
        poller.register(also, select.POLLIN)
    for fd, _ in poller.poll(wait_s * 1000):
        spool = by_fd.get(fd)
        if spool is not None:
            spool.pump()


def _drain(spools: list[_Spool], deadline: float) -> None:
    """After the job's group is gone: what is still in the pipes, until their end (or the deadline, if a
    process that escaped the group holds one open)."""
    while any(s.open for s in spools) and (left := deadline - time.monotonic()) > 0:
        _poll(spools, left)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)

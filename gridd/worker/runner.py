"""Runs one attempt of a job as a child process and reports how it ended, shell style.

Each attempt gets a fresh, empty working directory; stdout and stderr go to files (never through the
event loop), of which the first `max_output_bytes` are kept. The job runs in its own session (process
group), and the whole group is killed when the job ends, times out or is stopped, so no child outlives
its job. Processes are started and reaped from threads: it is the fastest way this machine allows
(DESIGN.md), and it keeps the event loop free.

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
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import anyio

from gridd.clock import Clock
from gridd.protocol.messages import JobResult, LeasedJob

TERM_GRACE_S = 2.0
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


async def run_attempt(job: LeasedJob, settings: RunSettings, clock: Clock) -> JobResult:
    """Run the job to its end (or its timeout); cancelling this kills the job's process group."""
    run_dir = settings.work_dir / f"{job.job_id}.{job.lease}"
    started = clock.now_ms()
    try:
        proc = await anyio.to_thread.run_sync(_spawn, job, run_dir, settings.worker, limiter=settings.limiter)
    except OSError as exc:
        await anyio.to_thread.run_sync(shutil.rmtree, run_dir, True)
        code, outcome = _spawn_failure(exc)
        return JobResult(
            job_id=job.job_id,
            lease=job.lease,
            exit_code=code,
            outcome=outcome,
            started_ms=started,
            ended_ms=clock.now_ms(),
            stderr=f"gridd: {job.spec.argv[0]}: {exc.strerror or exc}\n".encode(),
            message=f"{job.spec.argv[0]}: {exc.strerror or exc}",
        )
    timed_out = False
    try:
        with anyio.move_on_after(job.spec.timeout_s if job.spec.timeout_s else float("inf")) as scope:
            await anyio.to_thread.run_sync(proc.wait, abandon_on_cancel=True, limiter=settings.limiter)
        if scope.cancelled_caught:
            timed_out = True
            await _terminate(proc, settings.limiter)
    finally:
        with anyio.CancelScope(shield=True):
            _kill_group(proc.pid, signal.SIGKILL)  # stragglers the job left behind, or all of it if stopped
            if proc.returncode is None:
                await anyio.to_thread.run_sync(proc.wait, limiter=settings.limiter)
    ended = clock.now_ms()
    (stdout, stdout_cut), (stderr, stderr_cut) = await anyio.to_thread.run_sync(
        _collect, run_dir, settings.max_output_bytes, limiter=settings.limiter
    )
    rc = proc.returncode
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


def _spawn(job: LeasedJob, run_dir: Path, worker: str) -> subprocess.Popen[bytes]:
    cwd = run_dir / "cwd"
    cwd.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in HIDDEN_ENV}
    env.update(job.spec.env)
    env.update(GRIDD_JOB_ID=job.job_id, GRIDD_ATTEMPT=str(job.attempt), GRIDD_WORKER=worker)
    stdin: IO[bytes] | int = subprocess.DEVNULL
    if job.spec.stdin is not None:
        (run_dir / "stdin").write_bytes(job.spec.stdin)
        stdin = open(run_dir / "stdin", "rb")  # noqa: SIM115 - closed below, after the child has it
    try:
        with open(run_dir / "stdout", "wb") as out, open(run_dir / "stderr", "wb") as err:
            return subprocess.Popen(
                job.spec.argv,
                cwd=cwd,
                env=env,
                stdin=stdin,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
    finally:
        if not isinstance(stdin, int):
            stdin.close()


def _spawn_failure(exc: OSError) -> tuple[int, str]:
    if isinstance(exc, FileNotFoundError):
        return 127, "not_found"
    if isinstance(exc, PermissionError) or exc.errno in (errno.ENOEXEC, errno.EACCES, errno.EISDIR):
        return 126, "not_executable"
    return 126, "error"


async def _terminate(proc: subprocess.Popen[bytes], limiter: anyio.CapacityLimiter) -> None:
    """SIGTERM to the group, then SIGKILL if it has not ended within TERM_GRACE_S."""
    _kill_group(proc.pid, signal.SIGTERM)
    with anyio.move_on_after(TERM_GRACE_S):
        await anyio.to_thread.run_sync(proc.wait, abandon_on_cancel=True, limiter=limiter)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _collect(run_dir: Path, limit: int) -> tuple[tuple[bytes, bool], tuple[bytes, bool]]:
    """The head of both outputs; then the attempt's directory goes."""
    try:
        return _read_head(run_dir / "stdout", limit), _read_head(run_dir / "stderr", limit)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _read_head(path: Path, limit: int) -> tuple[bytes, bool]:
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        return b"", False
    return (data[:limit], True) if len(data) > limit else (data, False)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)

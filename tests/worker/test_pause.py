"""A suspended attempt: its process group stops and goes on, and its --timeout counts only running time."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from gridd.clock import SystemClock
from gridd.protocol.messages import JobResult, JobSpec, LeasedJob
from gridd.worker.runner import Pause, RunSettings, run_attempt
from tests.polling import eventually


def _job(argv: list[str], timeout_s: float | None) -> LeasedJob:
    return LeasedJob(job_id="1", lease=1, attempt=1, deadline_ms=1, spec=JobSpec(argv=argv, timeout_s=timeout_s))


def _settings(tmp_path: Path) -> RunSettings:
    return RunSettings(worker="w", work_dir=tmp_path, max_output_bytes=1 << 20)


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2]


async def test_time_spent_suspended_does_not_count_toward_the_timeout(tmp_path: Path) -> None:
    """A 0.6 s job with a 1 s timeout, stopped for longer than its timeout, still ends normally."""
    suspended_s = 1.5
    pause = Pause()
    job = _job([sys.executable, "-c", "import time; time.sleep(0.6); print('done')"], timeout_s=1.0)
    result: list[JobResult] = []

    async def run() -> None:
        result.append(await run_attempt(job, _settings(tmp_path), SystemClock(), None, pause))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        pgid = await eventually(lambda: pause.pgid, 10, 0.01, what="the job to start")
        pause.suspend()
        await eventually(lambda: _state(pgid) == "T", 10, 0.01, what="its process to stop")
        await anyio.sleep(suspended_s)  # the time itself is what is tested: longer than the timeout
        pause.resume()
    (ended,) = result
    assert (ended.exit_code, ended.outcome, ended.stdout) == (0, "exited", b"done\n")
    assert ended.ended_ms - ended.started_ms >= suspended_s * 1000


async def test_a_job_suspended_before_it_spawns_starts_stopped(tmp_path: Path) -> None:
    """Suspending an attempt whose process is not there yet stops it the moment it is."""
    pause = Pause()
    pause.suspend()
    job = _job([sys.executable, "-c", "print('ran')"], timeout_s=None)
    result: list[JobResult] = []

    async def run() -> None:
        result.append(await run_attempt(job, _settings(tmp_path), SystemClock(), None, pause))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await eventually(
            lambda: pause.pgid is not None and _state(pause.pgid) == "T", 10, 0.01, what="the job to start stopped"
        )
        assert not result
        pause.resume()
    assert result[0].stdout == b"ran\n"


async def test_a_stopped_job_that_is_cancelled_is_killed(tmp_path: Path) -> None:
    """Vacating a suspended job (cancelling its attempt) kills its stopped process group."""
    pause = Pause()
    job = _job([sys.executable, "-c", "import time; time.sleep(60)"], timeout_s=None)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_attempt, job, _settings(tmp_path), SystemClock(), None, pause)
        pid = await eventually(lambda: pause.pgid, 10, 0.01, what="the job to start")
        pause.suspend()
        await eventually(lambda: _state(pid) == "T", 10, 0.01, what="its process to stop")
        tg.cancel_scope.cancel()

    def gone() -> bool:
        try:
            return _state(pid) == "Z"
        except (FileNotFoundError, ProcessLookupError):  # reaped between the open and the read: ESRCH
            return True

    await eventually(gone, 10, 0.01, what="the stopped process to be killed")

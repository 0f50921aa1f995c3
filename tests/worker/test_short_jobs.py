"""What the worker's fast path for short jobs must not change for the job: the process it starts (with
posix_spawn where it can) is set up as subprocess.Popen would set it up, and every attempt gets an empty
directory of its own, mode 0700, though empty ones are kept and reused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gridd.clock import SystemClock
from gridd.protocol.messages import JobResult, JobSpec, LeasedJob
from gridd.worker import host_os
from gridd.worker.host_os.posix_spawn import Spawned, try_spawn
from gridd.worker.runner import RunSettings, run_attempt

# What a process knows of how it was started: its signal dispositions and mask, session and group,
# open descriptors, directory, environment.
PROBE = (
    "import os, sys\n"
    "status = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)\n"
    "print({k: status[k].strip() for k in ('SigIgn', 'SigBlk', 'SigCgt')})\n"
    "print(os.getpid() == os.getpgid(0) == os.getsid(0), sorted(os.listdir('/proc/self/fd')), os.getcwd())\n"
    "print(sorted(os.environ.items()), sys.stdin.read())\n"
)


def _run(start: str, tmp_path: Path) -> str:
    read, write = os.pipe()
    argv = [sys.executable, "-c", PROBE]
    env = {"PATH": os.environ["PATH"], "ONLY": "this"}
    if start == "posix_spawn":
        proc: Spawned | subprocess.Popen[bytes] | None = try_spawn(argv, tmp_path, env, None, write, write)
        assert isinstance(proc, Spawned)
    else:
        proc = subprocess.Popen(
            argv, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=write, stderr=write,
            start_new_session=True, close_fds=True,
        )  # fmt: skip
    os.close(write)
    with os.fdopen(read, "rb") as out:
        text = out.read().decode()
    os.waitpid(proc.pid, 0)
    return text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and glibc's posix_spawn")
def test_a_job_started_with_posix_spawn_is_set_up_as_popen_would_set_it_up(tmp_path: Path) -> None:
    assert _run("posix_spawn", tmp_path) == _run("popen", tmp_path)


def test_where_posix_spawn_cannot_do_what_popen_does_it_starts_nothing(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"]}
    assert try_spawn(["gridd-no-such-command"], tmp_path, env, None, 1, 2) is None  # Popen says why: 127
    assert try_spawn(["true"], tmp_path, {"PATH": "bin:/usr/bin:/bin"}, None, 1, 2) is None  # relative PATH
    assert try_spawn(["true", "a\0b"], tmp_path, env, None, 1, 2) is None  # Popen refuses it in its words


async def test_every_attempt_gets_an_empty_private_directory_though_empty_ones_are_reused(tmp_path: Path) -> None:
    settings = RunSettings("w1", tmp_path, 1024)
    looks = "stat -c %a .; ls -A; pwd"
    jobs = [
        "chmod 755 .",  # not as it was made: never reused
        "true",  # left empty: kept, and reused by the next
        "touch left-behind",  # not empty: removed
        looks,
        "true",
        looks,
    ]
    results = [await _attempt(i, ["sh", "-c", cmd], settings) for i, cmd in enumerate(jobs, start=1)]
    assert [r.exit_code for r in results] == [0] * len(jobs)
    for number in (4, 6):
        mode, cwd = results[number - 1].stdout.decode().split()
        assert mode == "700"
        assert Path(cwd) == tmp_path / f"{number}.1"  # its own name, nothing left in it by others
    assert not (tmp_path / "3.1").exists()


async def test_a_root_worker_running_jobs_as_root_starts_them_as_itself(tmp_path: Path) -> None:
    me = host_os.lookup_user("root")
    if os.geteuid() != 0 or me is None or not host_os.is_self(me):
        pytest.skip("needs a worker run as root, with root's own groups")
    proc = host_os.spawn(["true"], tmp_path, {"PATH": os.environ["PATH"]}, None, 1, 2, me)
    assert host_os.reap(proc).returncode == 0
    assert isinstance(proc, Spawned)  # no set-ids: what it would have been run as the worker's own user


async def _attempt(number: int, argv: list[str], settings: RunSettings) -> JobResult:
    job = LeasedJob(job_id=str(number), lease=1, attempt=1, deadline_ms=2**40, spec=JobSpec(argv=argv))
    return await run_attempt(job, settings, SystemClock())

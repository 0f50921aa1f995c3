"""One worker per work directory: a second one would delete the first one's jobs' directories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from gridd.config import WorkerConfig
from gridd.protocol.errors import WorkDirInUse
from gridd.worker.app import make_agent
from tests.conftest import JOBS_AS_WORKER, TOKEN


def test_a_second_worker_on_the_same_work_directory_is_refused_until_the_first_has_stopped(tmp_path: Path) -> None:
    config = WorkerConfig(name="desk", token=TOKEN, broker="127.0.0.1:1")
    first = make_agent(config, TOKEN, tmp_path)
    with pytest.raises(WorkDirInUse, match="--name or --work-dir"):
        make_agent(config, TOKEN, tmp_path)
    assert make_agent(WorkerConfig(name="other", token=TOKEN), TOKEN, tmp_path) is not None  # its own directory

    async def run_briefly() -> None:
        with anyio.move_on_after(0.2):  # it cannot reach a broker: let it try, then stop it
            await first.run()

    anyio.run(run_briefly)
    assert make_agent(config, TOKEN, tmp_path) is not None  # the first released the directory when it stopped


def test_gridd_worker_refuses_to_start_beside_a_running_worker_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "GRIDD_TOKEN": TOKEN, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    cmd = [
        sys.executable,
        "-m",
        "gridd",
        "worker",
        "--broker",
        "127.0.0.1:1",
        "--name",
        "desk",
        "--log-format",
        "logfmt",
        *JOBS_AS_WORKER,
    ]
    first = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    try:
        lock = tmp_path / "data" / "gridd" / "worker" / "desk.lock"
        with anyio.from_thread.start_blocking_portal() as portal:
            portal.call(_wait_for, lock)
        second = subprocess.run(cmd, env=env, capture_output=True, timeout=30)
        assert second.returncode == 1
        lines = second.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and "another worker is running" in lines[0], lines
    finally:
        first.kill()
        first.wait(timeout=10)


async def _wait_for(path: Path) -> None:
    with anyio.fail_after(20):
        while not path.exists():
            await anyio.sleep(0.02)

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
from tests.polling import wait_until


def test_a_second_worker_on_the_same_work_directory_is_refused_until_the_first_has_stopped(tmp_path: Path) -> None:
    config = WorkerConfig(name="desk", token=TOKEN, broker="127.0.0.1:1")
    first = make_agent(config, TOKEN, tmp_path)
    with pytest.raises(WorkDirInUse, match="--name or --work-dir"):
        make_agent(config, TOKEN, tmp_path)
    other = WorkerConfig(name="other", token=TOKEN)
    make_agent(other, TOKEN, tmp_path)  # another name, its own directory: not refused...
    with pytest.raises(WorkDirInUse):
        make_agent(other, TOKEN, tmp_path)  # ...and held by that worker from then on

    async def run_briefly() -> None:
        with anyio.move_on_after(0.2):  # it cannot reach a broker: let it try, then stop it
            await first.run()

    anyio.run(run_briefly)
    make_agent(config, TOKEN, tmp_path)  # the first released the directory when it stopped: not refused...
    with pytest.raises(WorkDirInUse, match="--name or --work-dir"):
        make_agent(config, TOKEN, tmp_path)  # ...and the new one holds it as the first did


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
        wait_until(lock.exists, 20, "the first worker's lock file", every_s=0.02)
        second = subprocess.run(cmd, env=env, capture_output=True, timeout=30)
        assert second.returncode == 1
        lines = second.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and "another worker is running" in lines[0], lines
    finally:
        first.kill()
        first.wait(timeout=10)

"""The synchronous client (scripts, notebooks) and `gridd worker --tasks` as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import gridd
from tests.conftest import JOBS_AS_WORKER, TOKEN, client_of, running_broker, running_worker
from tests.polling import eventually
from tests.tasks import sample

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


def _script_work(addr: str) -> dict[str, object]:
    """What a plain script does, with no event loop of its own."""
    with gridd.connect_sync(addr, TOKEN) as grid:
        handle = sample.add.submit(1, b=5)
        squares = list(sample.square.map(range(50), batch=7))
        command = grid.submit(["sh", "-c", "echo hello"])
        out = grid.handle(command).result()
        try:
            sample.boom.submit("no").result()
        except gridd.TaskFailed as exc:
            raised = exc.remote_type
        return {
            "sum": handle.result(),
            "squares": squares,
            "stdout": out.stdout,
            "raised": raised,
            "jobs": len(grid.jobs(limit=0)),
        }


async def test_the_sync_client_has_the_async_clients_methods(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, tasks=["tests.tasks.sample"]):
        got = await anyio.to_thread.run_sync(_script_work, b.addr)
    assert got == {
        "sum": 6,
        "squares": [x * x for x in range(50)],
        "stdout": b"hello\n",
        "raised": "ValueError",
        "jobs": 1 + 8 + 1 + 1,
    }


async def test_gridd_worker_tasks_serves_a_module_as_its_own_process(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as c:
        env = {**os.environ, "GRIDD_TOKEN": TOKEN, "PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(tmp_path)}
        argv = [sys.executable, "-m", "gridd", "worker", "--broker", b.addr, "--name", "py", "--slots", "2"]
        argv += JOBS_AS_WORKER
        proc = subprocess.Popen([*argv, "--tasks", "tests.tasks.sample"], env=env, cwd=tmp_path)
        try:
            await eventually(lambda: _has_worker(c, "py"))
            results = [r async for r in c.map(sample.square, range(300), batch=30)]
            x, pid = await (await c.submit_task(sample.where, 9)).result()
        finally:
            proc.terminate()
            await anyio.to_thread.run_sync(proc.wait)
    assert results == [x * x for x in range(300)]
    assert x == 9 and pid not in (os.getpid(), proc.pid)  # a pool process of that worker


def test_a_task_module_that_cannot_be_imported_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "GRIDD_TOKEN": TOKEN, "XDG_DATA_HOME": str(tmp_path)}
    argv = [sys.executable, "-m", "gridd", "worker", "--broker", "127.0.0.1:9", "--tasks", "no_such_tasks_module"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "gridd: cannot import task module 'no_such_tasks_module': ModuleNotFoundError: No module named"
        " 'no_such_tasks_module'"
    ]


async def _has_worker(c: gridd.Client, name: str) -> bool:
    return any(w.name == name for w in await c.workers())

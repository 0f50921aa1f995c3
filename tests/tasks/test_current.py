"""The current client (gridd/client/current.py): which connection `task.submit` and `task.map` use when the
code names none. Each script runs as its own process, as a user's would: the default client lives until
the interpreter exits, so it must not be opened inside the test process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from tests.conftest import TOKEN, running_broker, running_worker

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
TASKS = ["tests.tasks.sample"]

NO_WITH = """
import threading
from gridd.client import current
from tests.tasks import sample

# No `with` anywhere: eight threads race to open the default client, then submit through it.
start, clients, handles = threading.Barrier(8), {}, {}
def first_use(n):
    start.wait()
    clients[n] = current.client()
    handles[n] = sample.add.submit(n, 1)
threads = [threading.Thread(target=first_use, args=(n,)) for n in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(sorted(h.result() for h in handles.values()))
print(len({id(c) for c in clients.values()}), current.client() is clients[0])
print(list(sample.square.map(range(5), batch=2)))
"""

NESTED = """
import threading
import gridd
from gridd.client import current

with gridd.connect_sync() as outer:
    with gridd.connect_sync() as inner:
        seen = []
        thread = threading.Thread(target=lambda: seen.append(current.client()))
        thread.start(); thread.join()
        print(current.client() is inner, seen[0] not in (inner, outer))
    print(current.client() is outer)
print(current.client() not in (inner, outer), current.client() is seen[0])
"""


async def _run_script(tmp_path: Path, address: str, script: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GRIDD_BROKER": address, "GRIDD_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", script]
    return await anyio.to_thread.run_sync(
        lambda: subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    )


async def test_a_script_with_no_with_block_shares_one_default_connection_and_exits_cleanly(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, tasks=TASKS):
        done = await _run_script(tmp_path, b.addr, NO_WITH)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[1, 2, 3, 4, 5, 6, 7, 8]", "1 True", "[0, 1, 4, 9, 16]"]
    assert done.stderr == ""  # closed at exit without a word: no traceback, no "Exception ignored"


async def test_the_innermost_with_of_this_thread_is_current_and_other_threads_do_not_see_it(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b:
        done = await _run_script(tmp_path, b.addr, NESTED)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["True True", "True", "True True"]
    assert done.stderr == ""

"""The Celery peer: an app on the throwaway Redis ($GRIDD_BENCH_REDIS: the broker on db 0, results on
db 1), with a no-op task and a shell `true` task.

Imported by the benchmark process (to enqueue) and by `celery -A benchmarks.celery_app worker` (to run).
Results go to a database of their own, so that its key count (DBSIZE) is the number of jobs done: how the
benchmark sees the drain end without scanning keys.
"""

from __future__ import annotations

import os
import subprocess

from celery import Celery

_BASE = os.environ.get("GRIDD_BENCH_REDIS", "redis://127.0.0.1:6379")  # host and port; the databases are ours

app = Celery("gridd-bench", broker=f"{_BASE}/0", backend=f"{_BASE}/1")
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
)


@app.task
def noop(i: int) -> int:
    return 1


@app.task
def shell_true(i: int) -> int:
    subprocess.run(["true"], check=True)
    return 1

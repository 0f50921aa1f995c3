"""The huey peer: a SqliteHuey whose file is $GRIDD_BENCH_HUEY_DB, with a no-op task and a shell `true` task.

Imported by the benchmark process (to enqueue) and by `huey_consumer benchmarks.huey_app.huey` (to run).
Both tasks return 1 so that huey stores a result per job, which is how the benchmark sees the drain end.
"""

from __future__ import annotations

import os
import subprocess

from huey import SqliteHuey

huey = SqliteHuey("gridd-bench", filename=os.environ.get("GRIDD_BENCH_HUEY_DB", "/tmp/gridd-bench-huey.db"))


@huey.task()
def noop(i: int) -> int:
    return 1


@huey.task()
def shell_true(i: int) -> int:
    subprocess.run(["true"], check=True)
    return 1

"""The RQ peer's tasks: a no-op and a shell `true`, run by `rq worker` (a work horse forked per job).

Imported by the benchmark process (to enqueue, by reference) and by the workers (to run). Both return 1 so
that RQ stores a result per job and files the job in its FinishedJobRegistry, which is how the benchmark
sees the drain end.
"""

from __future__ import annotations

import subprocess


def noop(i: int) -> int:
    return 1


def shell_true(i: int) -> int:
    subprocess.run(["true"], check=True)
    return 1

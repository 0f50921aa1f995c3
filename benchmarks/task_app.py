"""The Python tasks the task benchmarks run: `gridd worker --tasks benchmarks.task_app`."""

from __future__ import annotations

import gridd


@gridd.task
def noop(i: int) -> int:
    return i


@gridd.task
async def noop_async(i: int) -> int:
    return i

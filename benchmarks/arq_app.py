"""The arq peer: a no-op and a shell `true` coroutine, and the WorkerSettings `arq benchmarks.arq_app.
WorkerSettings` runs them with, on the throwaway Redis ($GRIDD_BENCH_REDIS, db 0).

arq runs coroutines only, so the shell job is `asyncio.create_subprocess_exec("true")` (what an arq user
writes; `subprocess.run` would block the worker's loop). max_jobs=4: gridd's 4 slots per worker.
poll_delay: arq reads its queue by polling, and starts at most max_jobs jobs per poll; at its default
0.5 s a worker of 4 slots runs at most 8 jobs a second however short the jobs are, so the benchmark uses
$GRIDD_BENCH_ARQ_POLL_S (default 0.005 s; see benchmarks/README.md's peers section for the choice).
Results are kept (arq's default), as gridd and the other peers keep theirs; arq removes a job from its
queue's sorted set only when it has finished, which is how the benchmark sees the drain end.
LOG_CONFIG (`arq --custom-log-dict`) logs warnings only: arq's default logs two lines per job, where the
other peers run quiet (`huey_consumer -q`, `rq worker -q`, Celery at WARNING).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, ClassVar

from arq.connections import RedisSettings

REDIS = RedisSettings.from_dsn(os.environ.get("GRIDD_BENCH_REDIS", "redis://127.0.0.1:6379") + "/0")
POLL_S = float(os.environ.get("GRIDD_BENCH_ARQ_POLL_S", "0.005"))
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}


async def noop(ctx: dict[str, Any], i: int) -> int:
    return 1


async def shell_true(ctx: dict[str, Any], i: int) -> int:
    proc = await asyncio.create_subprocess_exec("true")
    if await proc.wait() != 0:
        raise RuntimeError("true failed")
    return 1


class WorkerSettings:
    functions: ClassVar[list[Any]] = [noop, shell_true]
    redis_settings = REDIS
    max_jobs = 4
    poll_delay = POLL_S
    max_tries = 1

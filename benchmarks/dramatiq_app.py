"""The dramatiq peer: a RedisBroker on the throwaway Redis ($GRIDD_BENCH_REDIS: messages on db 0,
results on db 1 through the Results middleware), with a no-op actor and a shell `true` actor.

Imported by the benchmark process (to send) and by `dramatiq benchmarks.dramatiq_app` (to run). Each actor
stores its result, as gridd and the other peers do; the benchmark sees the drain end when the queue's
message hash (`dramatiq:default.msgs`, emptied by each ack, which dramatiq sends after the message was
processed and its result stored) is empty. No retries: a failure shows at once, in the dead-letter queue.
"""

from __future__ import annotations

import os
import subprocess

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

_BASE = os.environ.get("GRIDD_BENCH_REDIS", "redis://127.0.0.1:6379")  # host and port; the databases are ours

broker = RedisBroker(url=f"{_BASE}/0")
broker.add_middleware(Results(backend=RedisBackend(url=f"{_BASE}/1")))
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True, max_retries=0)
def noop(i: int) -> int:
    return 1


@dramatiq.actor(store_results=True, max_retries=0)
def shell_true(i: int) -> int:
    subprocess.run(["true"], check=True)
    return 1

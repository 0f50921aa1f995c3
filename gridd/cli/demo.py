"""`gridd demo`: the grid's main job on an embedded default, with nothing to set up.

A broker and a few workers run in this process on a temporary data dir; a batch of real jobs (child
processes) is submitted, a progress bar follows the event stream, and a summary says what happened.
Some jobs fail on their first attempt on purpose, to show them retried and succeeding.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import anyio

from gridd.broker.app import run_broker
from gridd.client import connect
from gridd.config import BrokerConfig, WorkerConfig
from gridd.protocol.messages import JobSpec
from gridd.protocol.states import JobState
from gridd.worker.app import make_agent

# The events that end a job, and the state each says it ended in.
_ENDED_AS = {"job.succeeded": JobState.SUCCEEDED, "job.failed": JobState.FAILED, "job.cancelled": JobState.CANCELLED}

# Each job: count the primes below a bound (real CPU work), fail the first attempt of every 25th job.
JOB_CODE = """
import os, sys
n = int(sys.argv[1])
if n % 25 == 0 and os.environ["GRIDD_ATTEMPT"] == "1":
    sys.exit("simulated failure on the first attempt; the grid will retry")
bound = 20000 + 100 * n
sieve = bytearray([1]) * bound
sieve[0:2] = b"\\0\\0"
for i in range(2, int(bound ** 0.5) + 1):
    if sieve[i]:
        sieve[i * i :: i] = bytearray(len(sieve[i * i :: i]))
print(f"job {n}: {sum(sieve)} primes below {bound}")
"""


async def run_demo(args: argparse.Namespace) -> int:
    n_jobs, n_workers, slots = max(1, args.jobs), max(1, args.workers), max(1, args.slots)
    with tempfile.TemporaryDirectory(prefix="gridd-demo-") as tmp:
        token = secrets.token_urlsafe(16)
        data_dir = Path(tmp)
        # Its CA dies with the temporary dir: not one for the user's CA store.
        config = BrokerConfig(listen="127.0.0.1:0", token=token, retry_delay_s=0.2, keep_ca_for_user=False)
        async with anyio.create_task_group() as tg:
            broker = await tg.start(run_broker, config, data_dir / "broker")
            addr = f"127.0.0.1:{broker.port}"
            token = broker.credential_for(token)  # names the demo broker's CA: its peers check it first
            for i in range(n_workers):
                worker = WorkerConfig(broker=addr, name=f"demo-worker-{i + 1}", slots=slots, token=token)
                await tg.start(make_agent(worker, token, data_dir).run)
            print(f"gridd demo: broker on {addr}, {n_workers} workers x {slots} slots, data in {tmp}", file=sys.stderr)
            code = await _run_batch(addr, token, n_jobs)
            tg.cancel_scope.cancel()
    return code


async def _run_batch(addr: str, token: str, n_jobs: int) -> int:
    async with connect(addr, token) as client:
        _, events = await client.subscribe()
        started = time.monotonic()
        specs = [JobSpec(argv=[sys.executable, "-c", JOB_CODE, str(i)], max_attempts=2) for i in range(n_jobs)]
        ids = set(await client.submit_many(specs))
        print(f"submitted {len(ids)} jobs", file=sys.stderr)
        finished: Counter[str] = Counter()
        retried = 0
        by_worker: Counter[str] = Counter()
        shown = 0.0
        async for event in events:
            if event.job_id not in ids:
                continue
            if event.kind == "job.requeued":
                retried += 1
            ended = _ENDED_AS.get(event.kind)
            if ended is not None:
                finished[ended] += 1
                by_worker[event.worker or "?"] += 1
            done = sum(finished.values())
            if time.monotonic() - shown > 0.1 or done == n_jobs:
                shown = time.monotonic()
                _progress(done, n_jobs, finished[JobState.FAILED], retried, shown - started)
            if done == n_jobs:
                break
        elapsed = time.monotonic() - started
        print(file=sys.stderr)
        sample = min(ids, key=int)
        out, _ = await client.output(sample)
    succeeded, failed = finished[JobState.SUCCEEDED], finished[JobState.FAILED]
    print(
        f"{n_jobs} jobs in {elapsed:.2f} s ({n_jobs / elapsed:.0f} jobs/s): "
        f"{succeeded} succeeded, {failed} failed, {retried} retried after a failure"
    )
    for worker, count in sorted(by_worker.items()):
        print(f"  {worker}: {count} jobs")
    print(f"job {sample} printed: {out.decode().strip()!r} (gridd logs {sample})")
    return 0 if succeeded == n_jobs else 1


def _progress(done: int, total: int, failed: int, retried: int, elapsed: float) -> None:
    width = 30
    filled = width * done // total
    rate = done / elapsed if elapsed > 0 else 0.0
    bar = "#" * filled + "." * (width - filled)
    print(
        f"\r[{bar}] {done}/{total} done, {failed} failed, {retried} retried, {rate:.0f} jobs/s ",
        end="",
        file=sys.stderr,
        flush=True,
    )

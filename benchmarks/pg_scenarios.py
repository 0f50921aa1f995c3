"""The PostgreSQL store (issue 19) beside SQLite, in one run on one machine: a throwaway PostgreSQL server
(Debian's package, fsync on, as in production) with one and with two brokers, and the embedded SQLite store.

- drain: N jobs queued (submit_many, batches of 1,000), then fake workers in this process lease up to
  LEASE_BATCH at a time and complete them at once, until all succeeded: the broker's and the store's
  jobs per second (no process spawn in it). With two brokers, half the fake workers on each.
- round trip: one real 2-slot worker, one client: submit `true`, wait for its result; p50 and p99.
- lease cost with 1k and 100k (--full: 1M) jobs queued on PostgreSQL: one fake worker leases 1 job and
  completes it, repeatedly; median per lease (SQLite's own is the lease-scale scenario).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio

from benchmarks.harness import (
    TOKEN,
    BenchError,
    Broker,
    cpu_s,
    run_async,
    start_broker,
    start_worker,
    stop_process,
    submit_true_jobs,
    temp_root,
    wait_for_workers,
)

LEASE_BATCH = 64
FAKE_WORKERS = 4
DRAIN_TIMEOUT_S = 300.0


@contextlib.contextmanager
def brokers(root: Path, count: int, store: str | None) -> Iterator[list[Broker]]:
    started: list[Broker] = []
    try:
        for n in range(count):
            started.append(start_broker(root / f"broker-{n}", store=store, log_level="warning"))
        yield started
    finally:
        for b in started:
            stop_process(b.proc, grace_s=10.0)


def fake_drain(addrs: list[str], total: int) -> float:
    """FAKE_WORKERS in-process workers spread over `addrs` lease and complete until `total` jobs succeeded;
    returns the seconds from the first lease request to the last completion."""
    from gridd.client.connection import open_connection
    from gridd.protocol.messages import CompleteJobs, JobResult, RegisterWorker, RequestJobs

    done = [0]

    async def one(addr: str, name: str, finished: anyio.Event) -> None:
        async with open_connection(addr, TOKEN, role="worker", name=name) as conn:
            await conn.request(lambda rid: RegisterWorker(rid=rid, host="bench", slots=LEASE_BATCH, queues=["default"]))
            while not finished.is_set():
                with anyio.move_on_after(1):  # a long poll with nothing left: look at the count again
                    reply = await conn.request(lambda rid: RequestJobs(rid=rid, max_jobs=LEASE_BATCH))
                    now = int(time.time() * 1000)
                    results = [
                        JobResult(
                            job_id=j.job_id, lease=j.lease, exit_code=0, outcome="exited", started_ms=now, ended_ms=now
                        )
                        for j in reply.jobs
                    ]
                    if results:
                        await conn.request(lambda rid, r=results: CompleteJobs(rid=rid, results=r))
                        done[0] += len(results)
                        if done[0] >= total:
                            finished.set()

    async def go() -> float:
        finished = anyio.Event()
        t0 = time.perf_counter()
        with anyio.fail_after(DRAIN_TIMEOUT_S):
            async with anyio.create_task_group() as tg:
                for n in range(FAKE_WORKERS):
                    tg.start_soon(one, addrs[n % len(addrs)], f"fake-{n}", finished)
        return time.perf_counter() - t0

    return run_async(go)  # type: ignore[no-any-return]


def round_trips(addr: str, iters: int) -> list[float]:
    from gridd.client import connect

    async def go() -> list[float]:
        lat: list[float] = []
        async with connect(addr, TOKEN) as client:
            for i in range(iters + 5):
                t0 = time.perf_counter()
                (job,) = await client.wait([await client.submit(["true"])])
                if job.state != "succeeded":  # not a job state: a benchmark's check of the reply
                    raise BenchError(f"round-trip job ended {job.state}")
                if i >= 5:
                    lat.append((time.perf_counter() - t0) * 1000)
        return lat

    return run_async(go)  # type: ignore[no-any-return]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def measure(
    root: Path, label: str, count: int, store: str | None, jobs: int, iters: int, server: int | None = None
) -> dict[str, float]:
    """`server`: the PostgreSQL postmaster's pid, whose processes' CPU over the drain is the database's."""
    out: dict[str, float] = {}
    with brokers(root / label, count, store) as started:
        addrs = [b.addr for b in started]
        t_submit = submit_true_jobs(addrs[0], jobs, batch=1000)
        out[f"{label}_submit_jobs_s"] = jobs / t_submit
        brokers_cpu, db_cpu = sum(cpu_s(b.pid) for b in started), _server_cpu(server)
        out[f"{label}_drain_jobs_s"] = jobs / fake_drain(addrs, jobs)
        out[f"{label}_drain_broker_cpu_us"] = (sum(cpu_s(b.pid) for b in started) - brokers_cpu) / jobs * 1e6
        if server is not None:
            out[f"{label}_drain_db_cpu_us"] = (_server_cpu(server) - db_cpu) / jobs * 1e6
        worker = start_worker(addrs[-1], root / label / "work", slots=2, name=f"{label}-w", log_level="warning")
        try:
            wait_for_workers(addrs[-1], 1, timeout_s=30)
            lat = round_trips(addrs[0], iters)  # submitted through the first broker, run through the last
        finally:
            stop_process(worker, grace_s=3.0)
        out[f"{label}_rt_p50_ms"] = _percentile(lat, 50)
        out[f"{label}_rt_p99_ms"] = _percentile(lat, 99)
    return out


def _server_cpu(postmaster: int | None) -> float:
    """CPU seconds of a PostgreSQL server: its postmaster and every process it started (backends, WAL writer,
    checkpointer, autovacuum), those that ended included (a parent's cutime/cstime count its waited children)."""
    if postmaster is None:
        return 0.0
    total = cpu_s(postmaster) + _children_cpu(postmaster)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == postmaster:
                total += cpu_s(int(stat.parent.name))
    return total


def _children_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def prefill(url: str, n: int) -> None:
    """gridd's schema and n queued `true` jobs straight into the database (as submits would leave them)."""
    import msgspec
    import psycopg

    from gridd.broker.schema.postgresql import migrate
    from gridd.protocol.messages import JobSpec

    spec = msgspec.msgpack.encode(JobSpec(argv=["true"]))
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        conn.execute(
            "INSERT INTO jobs (id, state, queue, priority, max_attempts, spec, submitted_ms)"
            " SELECT g, 'queued', 'default', 0, 3, %s, 0 FROM generate_series(1, %s) g",  # not a job state: SQL text
            (spec, n),
        )
        conn.execute("INSERT INTO lanes (queue, lane) VALUES ('default', '') ON CONFLICT DO NOTHING")
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('last_job_id', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (n,),
        )
        conn.execute("ANALYZE")


def run_postgresql(sizes: Any, fx: Any) -> dict[str, float]:
    from benchmarks.scenarios import fake_worker_leases
    from tests.pgserver import PgServer

    jobs = 20_000 if sizes.mode != "quick" else 5_000
    iters = sizes.latency_iters
    out: dict[str, float] = {}
    with temp_root() as root, PgServer(fsync=True) as pg:
        out.update(measure(root, "sqlite", 1, None, jobs, iters))
        for label, count in (("pg1", 1), ("pg2", 2)):
            pg.create_database(label)
            out.update(measure(root, label, count, pg.url(label), jobs, iters, pg.pid))
        for n in sizes.lease_sizes:
            name = f"lease{n}"
            pg.create_database(name)
            prefill(pg.url(name), n)
            with brokers(root / name, 1, pg.url(name)) as [b]:
                leases, _ = fake_worker_leases(b.addr, sizes.leases)
            out[f"pg_lease_ms@{n}"] = statistics.median(leases)
    return out

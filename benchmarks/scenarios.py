"""The benchmark scenarios (issues 6 and 8). Each `run_*` function is one run: it starts what it needs,
measures, stops everything, and returns {figure key: value}. Peers and baselines are measured inside the
same run, so their ratio compares like with like on a machine whose load varies.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from benchmarks.cli_scenario import run_cli
from benchmarks.compress import SIZES_KIB, files_for, run_compress
from benchmarks.harness import (
    GRIDD,
    TOKEN,
    VENV_BIN,
    BenchError,
    StallWatch,
    bench_env,
    cpu_s,
    grid,
    rss_mb,
    run_async,
    run_timed,
    status_counts,
    stop_process,
    submit_true_jobs,
    temp_root,
)
from benchmarks.hops import thread_hop
from benchmarks.pg_scenarios import run_postgresql
from benchmarks.slow_fsync import notes as slow_fsync_notes
from benchmarks.slow_fsync import run_slow_fsync

REPO = Path(__file__).resolve().parent.parent
STALL_S = 10.0  # a gridd run whose finished-job count does not move for this long is abandoned as stalled


# ---- sizes ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How big each workload is: --quick (smoke, ~2 min), default (the issues' sizes), --full (adds 1M)."""

    mode: str
    shell_jobs: int
    drain_jobs: int
    cli_runs: int
    latency_iters: int
    throughput_jobs: int
    throughput_singles: int
    lease_sizes: tuple[int, ...]
    leases: int
    memory_jobs: int
    restart_jobs: int
    huey_jobs: int
    gridd_timeout_s: float
    heartbeat_workers: int = 1_000
    heartbeat_window_s: float = 30.0
    task_jobs: int = 20_000


QUICK = Sizes("quick", 500, 500, 10, 100, 20_000, 300, (1_000, 20_000), 200, 20_000, 20_000, 500, 30, 200, 12.0, 2_000)
DEFAULT = Sizes("default", 2_000, 2_000, 20, 200, 100_000, 1_000, (1_000, 100_000), 500, 100_000, 100_000, 2_000, 60)
FULL = Sizes(
    "full", 2_000, 2_000, 20, 200, 100_000, 1_000, (1_000, 100_000, 1_000_000), 500, 1_000_000, 1_000_000, 2_000, 120
)


# ---- figures -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    key: str
    unit: str
    label: str
    peer: str | None = None  # key of the baseline/peer figure of the same run: ratio = this / peer
    target: str = ""
    ok: Callable[[float, float | None], bool] | None = None  # (median, median ratio) -> met?


@dataclass
class Scenario:
    name: str
    about: str
    figures: list[Figure]
    run: Callable[[Sizes, Fixtures], dict[str, float]]
    notes: list[str] = field(default_factory=list)


class Fixtures:
    """Databases pre-filled with N queued `true` jobs, built once per benchmark process and copied per use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._built: dict[int, Path] = {}
        self.build_s: dict[int, float] = {}

    def queued_db(self, n: int) -> Path:
        if n not in self._built:
            root = Path(tempfile.mkdtemp(prefix=f"queued-{n}-", dir=self.root))
            with grid(root=root) as g:
                self.build_s[n] = submit_true_jobs(g.addr, n)
            self._built[n] = root / "broker"
        return self._built[n]


def _last_line(data: bytes) -> str:
    lines = data.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


# ---- 1. shell-each -------------------------------------------------------------------------------------------


def run_shell_each(sz: Sizes, fx: Fixtures) -> dict[str, float]:
    n = sz.shell_jobs
    out: dict[str, float] = {}
    with temp_root() as tmp:
        # Peers first, on a quiet machine (no broker or worker running yet).
        out["xargs_s"], cp = run_timed(f"seq {n} | xargs -P2 -n1 true", shell=True, timeout_s=60, cwd=tmp)
        if shutil.which("parallel"):
            out["parallel_s"], cp = run_timed(f"seq {n} | parallel -j2 true", shell=True, timeout_s=120, cwd=tmp)
    out["runner_only_s"] = runner_only(n)
    try:
        t = _gridd_shell_each(n, sz)
    except BenchError as exc:
        return {**out, "_error": str(exc)}  # the peers' figures still count
    out["gridd_s"] = t
    out["overhead_ms_per_job"] = (t - out["xargs_s"]) / n * 1000
    return out


def _gridd_shell_each(n: int, sz: Sizes) -> float:
    with grid() as g:
        g.add_worker(slots=2)
        env = bench_env(GRIDD_BROKER=g.addr)
        cmd = f"set -o pipefail; seq {n} | {GRIDD} submit --each - -- true | {GRIDD} wait -"
        try:
            t, cp = run_timed(
                cmd, shell=True, timeout_s=sz.gridd_timeout_s, env=env, cwd=g.root, watchdog=StallWatch(g.addr)
            )
        except BenchError as exc:
            raise BenchError(f"{exc}; job counts then: {_counts_line(g.addr)}") from None
        if cp.returncode != 0:
            raise BenchError(f"gridd pipeline exited {cp.returncode}: {_last_line(cp.stderr)}; {_counts_line(g.addr)}")
    return t


def runner_only(n: int, slots: int = 2) -> float:
    """The worker's own job runner (gridd.worker.runner.run_attempt: run dir, spawn from a thread, wait,
    collect output, remove the dir) for n `true` jobs, `slots` at a time, in-process, no broker: the floor
    a gridd worker can reach with its present runner."""
    from gridd.clock import SystemClock
    from gridd.protocol.messages import JobSpec, LeasedJob
    from gridd.worker.runner import RunSettings, run_attempt

    async def go(work: Path) -> float:
        settings = RunSettings("bench", work, 1024 * 1024)
        clock = SystemClock()
        todo = iter(range(n))

        async def slot() -> None:
            for i in todo:
                job = LeasedJob(job_id=str(i + 1), lease=1, attempt=1, deadline_ms=2**40, spec=JobSpec(argv=["true"]))
                result = await run_attempt(job, settings, clock)
                if result.exit_code != 0:
                    raise BenchError(f"runner-only job exited {result.exit_code}")

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(slots):
                tg.start_soon(slot)
        return time.perf_counter() - t0

    with temp_root() as tmp:
        return run_async(go, tmp)  # type: ignore[no-any-return]


def _counts_line(addr: str) -> str:
    try:
        counts = status_counts(addr)
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        return f"(status failed: {exc})"
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items()) if v)


# ---- 2. drain-shell ------------------------------------------------------------------------------------------


def gridd_drain(n: int, timeout_s: float) -> dict[str, float]:
    """n `true` jobs submitted with one --array into a broker without workers; then one 2-slot worker starts.
    Returns submit seconds, drain seconds (worker exec to last job recorded), and the steady rate (first job
    started to last job finished, from the broker's own timestamps)."""
    from gridd.client import connect

    with grid() as g:
        env = bench_env(GRIDD_BROKER=g.addr)
        t_submit, cp = run_timed([GRIDD, "submit", "--array", f"1-{n}", "--", "true"], env=env, timeout_s=60)
        if cp.returncode != 0:
            raise BenchError(f"gridd submit --array exited {cp.returncode}: {_last_line(cp.stderr)}")
        first = cp.stdout.split()[0].decode()

        async def drain() -> dict[str, float]:
            async with connect(g.addr, TOKEN) as client:
                job, _ = await client.show(first)
                group = job.group or first
                t0 = time.perf_counter()
                g.add_worker(slots=2, wait=False)
                jobs: list[Any] = []

                async def wait_all() -> None:
                    jobs.extend(await client.wait([group]))
                    tg.cancel_scope.cancel()

                async def watch() -> None:
                    last, since = -1, time.perf_counter()
                    while True:
                        await anyio.sleep(1)
                        counts = (await client.status()).counts
                        done = sum(counts.get(k, 0) for k in ("succeeded", "failed", "cancelled"))
                        if done != last:
                            last, since = done, time.perf_counter()
                        elif time.perf_counter() - since >= STALL_S:
                            raise BenchError(f"stalled: {done} jobs finished and none more for {STALL_S:g}s")

                try:
                    with anyio.fail_after(timeout_s):
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(wait_all)
                            tg.start_soon(watch)
                except TimeoutError:
                    raise BenchError(f"drain not done within {timeout_s:g}s") from None
                except BaseExceptionGroup as group_exc:
                    raise group_exc.exceptions[0] from None
                t = time.perf_counter() - t0
                bad = [j for j in jobs if j.state != "succeeded"]
                if len(jobs) != n or bad:
                    raise BenchError(f"{len(bad)} of {len(jobs)} jobs did not succeed")
                started = min(j.started_ms or 0 for j in jobs)
                finished = max(j.finished_ms or 0 for j in jobs)
                return {"drain_s": t, "steady_s": max(finished - started, 1) / 1000}

        try:
            res = run_async(drain)
        except BenchError as exc:
            raise BenchError(f"{exc}; job counts then: {_counts_line(g.addr)}") from None
    return {"submit_s": t_submit, **res}


def run_drain_shell(sz: Sizes, fx: Fixtures) -> dict[str, float]:
    n = sz.drain_jobs
    with temp_root() as tmp:
        xargs_s, _ = run_timed(f"seq {n} | xargs -P2 -n1 true", shell=True, timeout_s=60, cwd=tmp)
    try:
        d = gridd_drain(n, sz.gridd_timeout_s)
    except BenchError as exc:
        return {"xargs_jobs_s": n / xargs_s, "_error": str(exc)}
    return {
        "gridd_jobs_s": n / d["drain_s"],
        "gridd_steady_jobs_s": n / d["steady_s"],
        "xargs_jobs_s": n / xargs_s,
        "array_submit_s": d["submit_s"],
    }


# ---- 3. cli: one command, start to exit (benchmarks/cli_scenario.py) -------------------------------------------


# ---- 4. latency ----------------------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def run_latency(sz: Sizes, fx: Fixtures) -> dict[str, float]:
    from gridd.client import connect

    with grid() as g:
        g.add_worker(slots=2)

        async def go() -> list[float]:
            lat: list[float] = []
            async with connect(g.addr, TOKEN) as client:
                deadline = time.perf_counter() + 60
                for i in range(sz.latency_iters + 5):
                    t0 = time.perf_counter()
                    job_id = await client.submit(["true"])
                    (job,) = await client.wait([job_id])
                    t = time.perf_counter() - t0
                    if job.state != "succeeded":
                        raise BenchError(f"latency job {job_id} ended {job.state}")
                    if i >= 5:  # 5 warm-up round trips
                        lat.append(t * 1000)
                    if time.perf_counter() > deadline:
                        break
            return lat

        lat = run_async(go)
    return {"p50_ms": _percentile(lat, 50), "p99_ms": _percentile(lat, 99), "mean_ms": statistics.fmean(lat)}


# ---- 5. submit-throughput --------------------------------------------------------------------------------------


def run_submit_throughput(sz: Sizes, fx: Fixtures) -> dict[str, float]:
    from gridd.client import connect
    from gridd.protocol.messages import JobSpec

    with grid() as g:
        t_batch = submit_true_jobs(g.addr, sz.throughput_jobs, batch=1000)

        async def singles() -> float:
            async with connect(g.addr, TOKEN) as client:
                t0 = time.perf_counter()
                for _ in range(sz.throughput_singles):
                    await client.submit_many([JobSpec(argv=["true"])])
                return time.perf_counter() - t0

        t_single = run_async(singles)
    return {
        "batch1000_jobs_s": sz.throughput_jobs / t_batch,
        "batch1_jobs_s": sz.throughput_singles / t_single,
    }


# ---- 6. lease-scale ------------------------------------------------------------------------------------------


def fake_worker_leases(addr: str, count: int, *, time_limit_s: float = 60) -> tuple[list[float], list[float]]:
    """A worker in-process: RegisterWorker, then `count` times RequestJobs(max_jobs=1) and CompleteJobs
    (exit 0) for the job it got. Returns the lease and the completion round trips, in ms."""
    from gridd.client.connection import open_connection
    from gridd.protocol.messages import CompleteJobs, RegisterWorker, RequestJobs

    async def go() -> tuple[list[float], list[float]]:
        leases: list[float] = []
        completes: list[float] = []
        async with open_connection(addr, TOKEN, role="worker", name="bench-fake") as conn:
            await conn.request(lambda rid: RegisterWorker(rid=rid, host="bench", slots=1, queues=["default"]))
            deadline = time.perf_counter() + time_limit_s
            for _ in range(count):
                t0 = time.perf_counter()
                with anyio.fail_after(10):
                    reply = await conn.request(lambda rid: RequestJobs(rid=rid, max_jobs=1))
                t1 = time.perf_counter()
                results = _exited_0(reply.jobs)
                await conn.request(lambda rid, r=results: CompleteJobs(rid=rid, results=r))
                t2 = time.perf_counter()
                leases.append((t1 - t0) * 1000)
                completes.append((t2 - t1) * 1000)
                if t2 > deadline:
                    break
        return leases, completes

    return run_async(go)  # type: ignore[no-any-return]


def fake_worker_elsewhere(addr: str, count: int, *, time_limit_s: float = 60) -> list[float]:
    """A worker of queue `elsewhere` (2 slots) in-process, a client, and a worker of queue `idle` waiting for work that
    never comes (as idle desktops do): `count` times, one job submitted to `elsewhere`, leased and
    completed, while the jobs already queued wait for a queue no connected worker serves. Each lease drains
    its lane with a worker still waiting, so the dispatcher looks for the next delayed job. Round trips, ms."""
    from gridd.client.connection import open_connection
    from gridd.protocol.messages import CompleteJobs, JobSpec, RegisterWorker, RequestJobs, SubmitJobs

    async def go() -> list[float]:
        times: list[float] = []
        async with (
            open_connection(addr, TOKEN, role="worker", name="bench-elsewhere") as worker,
            open_connection(addr, TOKEN, role="worker", name="bench-idle") as idle,
            open_connection(addr, TOKEN) as client,
            anyio.create_task_group() as tg,
        ):
            await worker.request(lambda rid: RegisterWorker(rid=rid, host="bench", slots=2, queues=["elsewhere"]))
            await idle.request(lambda rid: RegisterWorker(rid=rid, host="bench", slots=1, queues=["idle"]))
            tg.start_soon(idle.request, lambda rid: RequestJobs(rid=rid, max_jobs=1))  # answered never
            deadline = time.perf_counter() + time_limit_s
            job = [JobSpec(argv=["true"], queue="elsewhere")]
            for _ in range(count):
                t0 = time.perf_counter()
                with anyio.fail_after(10):
                    await client.request(lambda rid: SubmitJobs(rid=rid, jobs=job))
                    reply = await worker.request(lambda rid: RequestJobs(rid=rid, max_jobs=2))  # gets the one
                results = _exited_0(reply.jobs)
                await worker.request(lambda rid, r=results: CompleteJobs(rid=rid, results=r))
                times.append((time.perf_counter() - t0) * 1000)
                if time.perf_counter() > deadline:
                    break
            tg.cancel_scope.cancel()
        return times

    return run_async(go)  # type: ignore[no-any-return]


def _exited_0(jobs: list[Any]) -> list[Any]:
    """A fake worker's results for the jobs it was granted: each exited 0, just now."""
    from gridd.protocol.messages import JobResult

    now = int(time.time() * 1000)
    return [
        JobResult(job_id=j.job_id, lease=j.lease, exit_code=0, outcome="exited", started_ms=now, ended_ms=now)
        for j in jobs
    ]


def run_lease_scale(sz: Sizes, fx: Fixtures) -> dict[str, float]:
    out: dict[str, float] = {}
    for n in sz.lease_sizes:
        db = fx.queued_db(n)
        with grid(data_from=db) as g:
            leases, completes = fake_worker_leases(g.addr, sz.leases)
        out[f"lease_ms@{n}"] = statistics.median(leases)
        out[f"complete_ms@{n}"] = statistics.median(completes)
        with grid(data_from=db) as g:  # a copy of the database as built: the queued jobs stay queued
            out[f"elsewhere_ms@{n}"] = statistics.median(fake_worker_elsewhere(g.addr, sz.leases))
    return out


# ---- 7. broker-memory ----------------------------------------------------------------------------------------


def run_broker_memory(sz: Sizes, fx: Fixtures) -> dict[str, float]:
    n = sz.memory_jobs
    with grid() as g:
        time.sleep(0.5)
        idle = rss_mb(g.broker.pid)
        submit_true_jobs(g.addr, n)
        time.sleep(0.5)
        after_submit = rss_mb(g.broker.pid)
    db = fx.queued_db(n)
    with grid(data_from=db) as g:
        status_counts(g.addr)
        time.sleep(0.5)
        after_restart = rss_mb(g.broker.pid)
    return {"idle_mb": idle, f"submitted_{n}_mb": after_submit, f"restarted_{n}_mb": after_restart}


# ---- 8. restart ----------------------------------------------------------------------------------------------


def _time_to_status(data_from: Path | None) -> float:
    """Seconds from `gridd broker` exec to its first successful status reply."""
    from gridd.client import connect

    with grid(data_from=data_from) as g:

        async def first_status() -> float:
            with anyio.fail_after(60):
                while True:
                    try:
                        async with connect(g.addr, TOKEN) as client:
                            await client.status()
                            return time.perf_counter() - g.broker.started_at
                    except OSError:
                        await anyio.sleep(0.002)
                    except Exception as exc:  # noqa: BLE001 - not serving yet
                        if "connect" not in str(exc):
                            raise
                        await anyio.sleep(0.002)

        return run_async(first_status)  # type: ignore[no-any-return]


def run_restart(sz: Sizes, fx: Fixtures) -> dict[str, float]:
    n = sz.restart_jobs
    db = fx.queued_db(n)
    empty = _time_to_status(None)
    full = _time_to_status(db)
    return {f"restart_s@{n}": full, "restart_s@0": empty}


# ---- 8b. heartbeats ---------------------------------------------------------------------------------------------


HANDSHAKES_AT_ONCE = 16


def run_heartbeats(sz: Sizes, fx: Fixtures) -> dict[str, float]:
    """N simulated idle workers, each as a real one is: registered, a lease request pending, and a
    heartbeat (RenewLeases) every heartbeat_s of the broker (its default TTL/3 = 10 s). The broker's
    CPU over a window of several heartbeat rounds, as a percentage of one core."""
    from gridd.client.connection import open_connection
    from gridd.protocol.messages import RegisterWorker, RenewLeases, RequestJobs

    n, window_s = sz.heartbeat_workers, sz.heartbeat_window_s
    with grid() as g:
        # Handshakes in flight at once: under the broker's cap on peers of one address that have not
        # authenticated yet (admission.py: 32), which a burst of 1,000 connections would hit.
        handshakes = anyio.Semaphore(HANDSHAKES_AT_ONCE)

        async def one(i: int, ready: anyio.Event, counted: list[int]) -> None:
            async with contextlib.AsyncExitStack() as stack:
                async with handshakes:
                    conn = await stack.enter_async_context(
                        open_connection(g.addr, TOKEN, role="worker", name=f"hb-{i}")
                    )
                await conn.request(lambda rid: RegisterWorker(rid=rid, host="bench", slots=1, queues=["default"]))
                await conn.send(RequestJobs(rid=2**31, max_jobs=1))  # the idle worker's pending long poll
                counted[0] += 1
                if counted[0] == n:
                    ready.set()
                while True:  # until the task group is cancelled
                    await anyio.sleep(conn.welcome.heartbeat_s)
                    await conn.request(lambda rid: RenewLeases(rid=rid, leases=[]))

        async def stream(seconds: float = STREAM_S) -> int:
            """STREAM_JOBS_S jobs a second of `true` on the queue only the real worker serves, for `seconds`;
            returns how many ran."""
            from gridd.client import connect

            async with connect(g.addr, TOKEN) as client:
                ids = []
                t_end = time.perf_counter() + seconds
                while time.perf_counter() < t_end:  # bounded by `seconds`
                    ids.append(await client.submit(["true"], queue=STREAM_QUEUE))
                    await anyio.sleep(1 / STREAM_JOBS_S)  # the stream's pace, not a wait for something
                with anyio.fail_after(60):
                    views = await client.wait(ids)
            if any(v.state != "succeeded" for v in views):
                raise BenchError("a streamed job did not succeed")
            return len(ids)

        async def go() -> dict[str, float]:
            g.add_worker(slots=2, name="stream-w", wait=False, extra=["--queue", STREAM_QUEUE])
            await stream(2.0)  # the worker's start, and a first run of the stream (warm-up)
            cpu_a, jobs_a = cpu_s(g.broker.pid), await stream()  # alone: the stream's own cost
            cpu_b = cpu_s(g.broker.pid)
            ready, counted = anyio.Event(), [0]
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(one, i, ready, counted)
                with anyio.fail_after(120):
                    await ready.wait()
                await anyio.sleep(2)  # let the connection burst settle before measuring
                cpu0, t0 = cpu_s(g.broker.pid), time.perf_counter()
                await anyio.sleep(window_s)
                cpu1, t1 = cpu_s(g.broker.pid), time.perf_counter()
                jobs = await stream()
                cpu2, t2 = cpu_s(g.broker.pid), time.perf_counter()
                tg.cancel_scope.cancel()
            idle_rate = (cpu1 - cpu0) / (t1 - t0)
            return {
                "cpu_pct": 100 * idle_rate,
                "alone_cpu_ms_per_job": (cpu_b - cpu_a) / jobs_a * 1000,
                "stream_cpu_pct": 100 * (cpu2 - cpu1) / (t2 - t1),
                # What the stream added to the idle workers' own cost (their heartbeats), per job.
                "stream_cpu_ms_per_job": ((cpu2 - cpu1) - idle_rate * (t2 - t1)) / jobs * 1000,
            }

        out: dict[str, float] = run_async(go)
    return {**out, "workers": float(n), "stream_jobs_s": STREAM_JOBS_S}


# The heartbeats scenario's second window: jobs run by one more worker, on a queue the idle ones do not serve.
STREAM_QUEUE = "stream"
STREAM_JOBS_S = 20.0
STREAM_S = 10.0


# ---- 9. huey (and Redis peers) ---------------------------------------------------------------------------------


def _huey_drain(task_name: str, n: int, db_path: Path, timeout_s: float) -> tuple[float, float]:
    """Enqueue n calls of benchmarks.huey_app.<task_name> into SqliteHuey, then start `huey_consumer -w 2 -k
    process` and time until n results are stored. Returns (enqueue seconds, drain seconds)."""
    os.environ["GRIDD_BENCH_HUEY_DB"] = str(db_path)
    from benchmarks import huey_app

    app = importlib.reload(huey_app)
    task = getattr(app, task_name)
    t0 = time.perf_counter()
    for i in range(n):
        task(i)
    t_enqueue = time.perf_counter() - t0
    consumer = shutil.which("huey_consumer", path=str(VENV_BIN))
    if consumer is None:
        raise BenchError("huey_consumer not installed (pip install huey into the venv)")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    log = open(db_path.with_suffix(".consumer.log"), "ab")  # noqa: SIM115
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [consumer, "benchmarks.huey_app.huey", "-w", "2", "-k", "process", "-q"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    log.close()
    try:
        storage = app.huey.storage
        deadline = t0 + timeout_s
        while storage.result_store_size() < n:
            if time.perf_counter() > deadline:
                raise BenchError(f"huey drained {storage.result_store_size()} of {n} within {timeout_s:g}s")
            if proc.poll() is not None:
                raise BenchError(f"huey_consumer exited {proc.returncode}")
            time.sleep(0.002)
        t_drain = time.perf_counter() - t0
    finally:
        stop_process(proc, grace_s=5)
    return t_enqueue, t_drain


def run_huey(sz: Sizes, fx: Fixtures) -> dict[str, float]:
    n = sz.huey_jobs
    out: dict[str, Any] = {}
    with temp_root() as tmp:
        xargs_s, _ = run_timed(f"seq {n} | xargs -P2 -n1 true", shell=True, timeout_s=60, cwd=tmp)
        for task in ("noop", "shell_true"):
            enq, drain = _huey_drain(task, n, tmp / f"huey-{task}.db", sz.gridd_timeout_s)
            out[f"huey_{task}_jobs_s"] = n / drain
            out[f"huey_{task}_total_s"] = enq + drain
    try:
        d = gridd_drain(n, sz.gridd_timeout_s)
    except BenchError as exc:
        return {**out, "_error": str(exc)}  # huey's figures still count
    out["gridd_shell_jobs_s"] = n / d["drain_s"]
    out["gridd_total_s"] = d["submit_s"] + d["drain_s"]
    out["gridd_overhead_jobs_s"] = n / max(d["drain_s"] - xargs_s, 1e-3)
    return out


# ---- 10. tasks and task-latency (Python tasks, issue 4) ---------------------------------------------------------


def run_tasks(sz: Sizes, fx: Fixtures) -> dict[str, float]:
    from benchmarks import task_scenarios as ts

    out = {"huey_noop_jobs_s": ts.huey_noop(sz.task_jobs, sz.gridd_timeout_s)}
    try:
        out.update(ts.task_throughput(sz.task_jobs, sz.gridd_timeout_s))
    except BenchError as exc:
        return {**out, "_error": str(exc)}
    return out


def run_tls_cost(sz: Sizes, fx: Fixtures) -> dict[str, float]:
    from benchmarks import task_scenarios as ts

    try:
        # Half the tasks scenario's jobs, twice (both transports), with room for a loaded machine.
        return ts.tls_cost(sz.task_jobs // 2, sz.latency_iters * 2, sz.gridd_timeout_s * 3)
    except BenchError as exc:
        return {"_error": str(exc)}


def run_task_latency(sz: Sizes, fx: Fixtures) -> dict[str, float]:
    from benchmarks import task_scenarios as ts

    return ts.task_latency(sz.latency_iters * 2)


def redis_note() -> str:
    from benchmarks.peers import missing

    why = missing()
    if why:
        return f"RQ/Celery/dramatiq/arq: skipped: {why} (python -m benchmarks.setup_peers installs them)"
    return "RQ/Celery/dramatiq/arq: in the peers scenario (a throwaway redis-server)"


def run_peers(sz: Sizes, fx: Fixtures) -> dict[str, float]:
    from benchmarks import peers

    return peers.run_peers(sz.huey_jobs, sz.gridd_timeout_s * 2)


def _peers_figures() -> list[Figure]:
    """benchmarks/peers.py's figures: per kind of job, each system's drain rate, then enqueue + drain times."""
    kinds = {"noop": "no-op function", "shell_true": "`true` as a process"}
    how = {
        "huey": "-w 2 -k process",
        "rq": "2 `rq worker`, a fork per job",
        "celery": "2 workers, --pool threads -c 4",
        "dramatiq": "--processes 2 --threads 4",
        "arq": "2 workers, max_jobs 4",
    }
    figures = []
    for kind, what in kinds.items():
        gridd_what = "no-op task" if kind == "noop" else "shell job `true`"
        figures.append(
            Figure(
                f"gridd_{kind}_jobs_s", "jobs/s", f"gridd drain, {gridd_what}, 2 x 4 slots", f"best_peer_{kind}_jobs_s"
            )
        )
        figures += [Figure(f"{p}_{kind}_jobs_s", "jobs/s", f"{p} drain, {what} ({h})") for p, h in how.items()]
        figures.append(Figure(f"best_peer_{kind}_jobs_s", "jobs/s", f"best peer's drain, {what}"))
    for kind, what in kinds.items():
        figures += [Figure(f"{p}_{kind}_total_s", "s", f"{p} enqueue + drain, {what}") for p in ("gridd", *how)]
    return figures


# ---- the list -------------------------------------------------------------------------------------------------


def _le(limit: float) -> Callable[[float, float | None], bool]:
    return lambda v, r: v <= limit


def _ge(limit: float) -> Callable[[float, float | None], bool]:
    return lambda median, ratio: median >= limit


def _ratio_le(limit: float) -> Callable[[float, float | None], bool]:
    return lambda v, r: r is not None and r <= limit


def _slow_fsync_figures() -> list[Figure]:
    figures = []
    for tree, whose in (("tree", "this tree"), ("base", "baseline")):
        for disk, how in (("slow", "fsync +200 ms"), ("fast", "plain disk")):
            p = f"{tree}_{disk}_"
            target, ok = ("< 10 ms", _le(10)) if p == "tree_slow_" else ("", None)
            peer = "base_slow_status_p99_ms" if p == "tree_slow_" else None
            figures += [
                Figure(p + "status_p50_ms", "ms", f"{whose}, {how}: status p50"),
                Figure(p + "status_p99_ms", "ms", f"{whose}, {how}: status p99", peer, target, ok),
                Figure(p + "status_max_ms", "ms", f"{whose}, {how}: status max"),
                Figure(p + "submit_p50_ms", "ms", f"{whose}, {how}: submit p50 (a durable commit)"),
                Figure(p + "submits_s", "jobs/s", f"{whose}, {how}: submits/s (2 clients, 20 ms pauses)"),
            ]
    return figures


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "postgresql",
            "the PostgreSQL store (1 and 2 brokers, fsync on) beside SQLite: drain by fake workers, round trips",
            [
                Figure(
                    "pg1_drain_jobs_s",
                    "jobs/s",
                    "PostgreSQL, 1 broker: drain",
                    "sqlite_drain_jobs_s",
                    ">= 5,000",
                    _ge(5000),
                ),
                Figure("pg2_drain_jobs_s", "jobs/s", "PostgreSQL, 2 brokers: drain", "sqlite_drain_jobs_s"),
                Figure("sqlite_drain_jobs_s", "jobs/s", "SQLite: drain"),
                Figure(
                    "pg1_drain_broker_cpu_us",
                    "us/job",
                    "PostgreSQL, 1 broker: drain, broker CPU",
                    "sqlite_drain_broker_cpu_us",
                ),
                Figure("pg1_drain_db_cpu_us", "us/job", "PostgreSQL, 1 broker: drain, PostgreSQL's CPU"),
                Figure("pg2_drain_broker_cpu_us", "us/job", "PostgreSQL, 2 brokers: drain, both brokers' CPU"),
                Figure("pg2_drain_db_cpu_us", "us/job", "PostgreSQL, 2 brokers: drain, PostgreSQL's CPU"),
                Figure("sqlite_drain_broker_cpu_us", "us/job", "SQLite: drain, broker CPU"),
                Figure("pg1_submit_jobs_s", "jobs/s", "PostgreSQL, 1 broker: submit_many", "sqlite_submit_jobs_s"),
                Figure("pg2_submit_jobs_s", "jobs/s", "PostgreSQL, 2 brokers: submit_many", "sqlite_submit_jobs_s"),
                Figure("sqlite_submit_jobs_s", "jobs/s", "SQLite: submit_many"),
                Figure("pg1_rt_p50_ms", "ms", "PostgreSQL, 1 broker: round trip p50", "sqlite_rt_p50_ms"),
                Figure("pg1_rt_p99_ms", "ms", "PostgreSQL, 1 broker: round trip p99", "sqlite_rt_p99_ms"),
                Figure(
                    "pg2_rt_p50_ms",
                    "ms",
                    "PostgreSQL, 2 brokers: round trip p50 (via A, run via B)",
                    "sqlite_rt_p50_ms",
                ),
                Figure("pg2_rt_p99_ms", "ms", "PostgreSQL, 2 brokers: round trip p99", "sqlite_rt_p99_ms"),
                Figure("sqlite_rt_p50_ms", "ms", "SQLite: round trip p50"),
                Figure("sqlite_rt_p99_ms", "ms", "SQLite: round trip p99"),
            ],
            run_postgresql,
        ),
        Scenario(
            "shell-each",
            "seq N | gridd submit --each - -- true | gridd wait -, one 2-slot worker already connected",
            [
                Figure("gridd_s", "s", "gridd submit --each | wait", "xargs_s", "<= 1.25 x xargs", _ratio_le(1.25)),
                Figure("xargs_s", "s", "xargs -P2 -n1 true"),
                Figure("parallel_s", "s", "GNU parallel -j2 true"),
                Figure("overhead_ms_per_job", "ms/job", "gridd minus xargs, per job"),
                Figure("runner_only_s", "s", "worker's runner alone, no broker", "xargs_s"),
            ],
            run_shell_each,
        ),
        Scenario(
            "compress",
            "gzip -kf of N files of text: xargs -P2 against gridd submit --each | wait, one 2-slot worker already"
            " connected (issue 20's short compressions); and gridd's CPU per job (broker, worker, both CLIs)",
            [
                fig
                for kib in SIZES_KIB
                for fig in (
                    Figure(f"gridd_s@{kib}k", "s", f"gridd, files of {kib} KiB", f"xargs_s@{kib}k"),
                    Figure(f"xargs_s@{kib}k", "s", f"xargs -P2 -n1 gzip -kf, files of {kib} KiB"),
                    Figure(f"gridd_cpu_ms@{kib}k", "ms/job", f"gridd's own CPU per job, files of {kib} KiB"),
                )
            ],
            lambda sz, fx: run_compress(files_for(sz.shell_jobs), sz.gridd_timeout_s),
        ),
        Scenario(
            "drain-shell",
            "N `true` jobs queued by one --array submit; time from worker exec (2 slots) to all succeeded",
            [
                Figure("gridd_jobs_s", "jobs/s", "gridd drain (incl. worker start)", "xargs_jobs_s"),
                Figure("gridd_steady_jobs_s", "jobs/s", "gridd drain, first start..last finish", "xargs_jobs_s"),
                Figure("xargs_jobs_s", "jobs/s", "xargs -P2 -n1 true"),
                Figure("array_submit_s", "s", "gridd submit --array 1-N (one process)"),
            ],
            run_drain_shell,
        ),
        Scenario(
            "cli",
            "wall time of one CLI process each (medians, interleaved): submit, show, status against a running broker;"
            " --version; python -c pass; and a process importing only what `gridd submit` imports",
            [
                Figure("submit_ms", "ms", "gridd submit -- true", "python_pass_ms", "<= 50 ms", _le(50)),
                Figure("show_ms", "ms", "gridd show ID", "python_pass_ms", "<= 40 ms", _le(40)),
                Figure("status_ms", "ms", "gridd status", "python_pass_ms", "<= 40 ms", _le(40)),
                Figure("version_ms", "ms", "gridd --version (start-up, parser)", "python_pass_ms"),
                Figure("python_pass_ms", "ms", "python -c pass (floor)"),
                Figure("submit_imports_ms", "ms", "python importing only what submit imports", "python_pass_ms"),
                Figure("submit_import_share_ms", "ms", "submit: imports (that minus python -c pass)"),
                Figure("submit_rest_ms", "ms", "submit: parse, connect, request, exit (submit minus imports)"),
                Figure("submit_modules", "", "modules submit imports beyond python -c pass"),
                Figure("submit_cpu_ms", "ms", "gridd submit: CPU (user+sys)", "python_pass_cpu_ms"),
                Figure("show_cpu_ms", "ms", "gridd show: CPU", "python_pass_cpu_ms"),
                Figure("status_cpu_ms", "ms", "gridd status: CPU", "python_pass_cpu_ms"),
                Figure("version_cpu_ms", "ms", "gridd --version: CPU", "python_pass_cpu_ms"),
                Figure("python_pass_cpu_ms", "ms", "python -c pass: CPU"),
                *[
                    Figure(f"base_{name}_ms", "ms", f"$GRIDD_BENCH_BASELINE: {what}", f"{name}_ms")
                    for name, what in (
                        ("submit", "gridd submit -- true"),
                        ("show", "gridd show ID"),
                        ("status", "gridd status"),
                        ("version", "gridd --version"),
                    )
                ],
                *[
                    Figure(f"base_{name}_cpu_ms", "ms", f"$GRIDD_BENCH_BASELINE: {name}, CPU", f"{name}_cpu_ms")
                    for name in ("submit", "show", "status", "version")
                ],
                *[
                    Figure(f"phase_{phase}_ms", "ms", f"submit in phases: {what}")
                    for phase, what in (
                        ("interpreter", "interpreter start, to the first line"),
                        ("import", "imports"),
                        ("parse", "parser built, arguments read"),
                        ("config", "configuration, address, credential"),
                        ("connect", "TCP, TLS, handshake"),
                        ("request", "flags read, submit sent, reply read"),
                        ("close", "socket closed"),
                        ("exit", "interpreter exit"),
                    )
                ],
            ],
            lambda sz, fx: run_cli(sz.cli_runs),
        ),
        Scenario(
            "latency",
            "Python client, one connection: submit `true`, wait for its result; idle grid, one 2-slot worker",
            [
                Figure("p50_ms", "ms", "submit-to-result p50", None, "< 1 ms (no-op task)", _le(1)),
                Figure("p99_ms", "ms", "submit-to-result p99", None, "< 5 ms (no-op task)", _le(5)),
                Figure("mean_ms", "ms", "submit-to-result mean"),
            ],
            run_latency,
        ),
        Scenario(
            "submit-throughput",
            "one Python client, submit_many into a broker without workers, each batch acknowledged after commit",
            [
                Figure("batch1000_jobs_s", "jobs/s", "batches of 1,000"),
                Figure("batch1_jobs_s", "jobs/s", "batches of 1", "batch1000_jobs_s"),
            ],
            run_submit_throughput,
        ),
        Scenario(
            "lease-scale",
            "a fake worker leases 1 job and completes it, repeatedly, with N jobs queued; median per lease",
            [],  # filled in by figures_for() from the sizes
            run_lease_scale,
        ),
        Scenario(
            "broker-memory",
            "broker RSS (VmRSS) idle, after N jobs were submitted to it, and restarted on a DB with N queued",
            [],
            run_broker_memory,
        ),
        Scenario(
            "restart",
            "from `gridd broker` exec to the first successful status reply, with N jobs in the database",
            [],
            run_restart,
        ),
        Scenario(
            "heartbeats",
            "N simulated idle workers (registered, a lease request pending) heart-beating at the default interval;"
            " then a stream of jobs run by one more worker, on a queue they do not serve",
            [
                Figure("cpu_pct", "%", "broker CPU, % of one core", None, "< 10 % of one core", _le(10)),
                Figure("workers", "", "simulated workers"),
                Figure("stream_cpu_pct", "%", "broker CPU with a stream of jobs run by another worker"),
                Figure(
                    "stream_cpu_ms_per_job",
                    "ms/job",
                    "broker CPU per streamed job, the idle workers waiting (beyond their heartbeats)",
                    "alone_cpu_ms_per_job",
                ),
                Figure("alone_cpu_ms_per_job", "ms/job", "broker CPU per streamed job, before the idle workers came"),
                Figure("stream_jobs_s", "jobs/s", "the stream (`true` on a queue the idle workers do not serve)"),
            ],
            run_heartbeats,
        ),
        Scenario(
            "huey",
            "N no-op jobs queued, then drained by 2 worker processes: gridd (shell `true`) vs huey SqliteHuey",
            [
                Figure("gridd_shell_jobs_s", "jobs/s", "gridd drain, shell `true`", "huey_noop_jobs_s"),
                Figure("huey_noop_jobs_s", "jobs/s", "huey -w2 -k process, no-op function"),
                Figure("huey_shell_true_jobs_s", "jobs/s", "huey -w2 -k process, subprocess.run(['true'])"),
                Figure(
                    "gridd_overhead_jobs_s",
                    "jobs/s",
                    "gridd's own overhead (drain minus xargs time)",
                    "huey_noop_jobs_s",
                ),
                Figure("gridd_total_s", "s", "gridd submit + drain", "huey_noop_total_s"),
                Figure("huey_noop_total_s", "s", "huey enqueue + drain (no-op)"),
                Figure("huey_shell_true_total_s", "s", "huey enqueue + drain (shell true)"),
            ],
            run_huey,
        ),
        Scenario(
            "peers",
            "N jobs queued, then drained by 2 worker processes: gridd, huey, RQ, Celery, dramatiq, arq (Redis peers on"
            " a throwaway redis-server), no-op functions and `true` as a process",
            _peers_figures(),
            run_peers,
        ),
        Scenario(
            "tasks",
            "N no-op Python tasks, 2 worker processes (4 slots each), every state change committed; huey same run",
            [
                Figure(
                    "e2e_jobs_s",
                    "jobs/s",
                    "gridd map(batch=1): submit, run, result",
                    "huey_noop_jobs_s",
                    ">= 20,000 jobs/s",
                    lambda v, r: v >= 20_000,
                ),
                Figure("e2e_broker_cpu_us", "us/job", "end to end: broker CPU per job (utime+stime)"),
                Figure("e2e_workers_cpu_us", "us/job", "end to end: both workers' CPU per job"),
                Figure("e2e_client_cpu_us", "us/job", "end to end: client CPU per job"),
                Figure("drain_jobs_s", "jobs/s", "gridd drain of N queued task jobs", "huey_noop_jobs_s"),
                Figure("e2e_batch100_records_s", "records/s", "gridd map(batch=100), 10 x N records"),
                Figure("huey_noop_jobs_s", "jobs/s", "huey -w2 -k process, no-op, pre-filled drain"),
            ],
            run_tasks,
        ),
        Scenario(
            "task-latency",
            "Python client, one connection: submit a no-op task, wait for its result; idle grid, one worker",
            [
                Figure("p50_ms", "ms", "submit-to-result p50", None, "< 1 ms", _le(1)),
                Figure("p99_ms", "ms", "submit-to-result p99", None, "< 5 ms", _le(5)),
                Figure("mean_ms", "ms", "submit-to-result mean"),
                Figure("broker_cpu_us", "us/job", "broker CPU per job (utime+stime)"),
                Figure("worker_cpu_us", "us/job", "worker CPU per job"),
                Figure("client_cpu_us", "us/job", "client CPU per job"),
            ],
            run_task_latency,
        ),
        Scenario(
            "tls-cost",
            "the tasks end-to-end throughput and the task-latency round trip over TLS and over --insecure (plain"
            " TCP), one after the other in each run",
            [
                Figure(
                    "tls_e2e_jobs_s",
                    "jobs/s",
                    "tasks end to end over TLS",
                    "insecure_e2e_jobs_s",
                    ">= 0.9 x --insecure",
                    lambda v, r: r is not None and r >= 0.9,
                ),
                Figure("insecure_e2e_jobs_s", "jobs/s", "tasks end to end, --insecure"),
                Figure("tls_p50_ms", "ms", "task round trip p50 over TLS", "insecure_p50_ms"),
                Figure("insecure_p50_ms", "ms", "task round trip p50, --insecure"),
                Figure("p50_extra_ms", "ms", "TLS p50 minus --insecure p50", None, "<= 0.3 ms", _le(0.3)),
                Figure("tls_p99_ms", "ms", "task round trip p99 over TLS", "insecure_p99_ms"),
                Figure("insecure_p99_ms", "ms", "task round trip p99, --insecure"),
                Figure("tls_broker_cpu_us", "us/job", "round trip: broker CPU per job, TLS", "insecure_broker_cpu_us"),
                Figure("insecure_broker_cpu_us", "us/job", "round trip: broker CPU per job, --insecure"),
                Figure("tls_worker_cpu_us", "us/job", "round trip: worker CPU per job, TLS", "insecure_worker_cpu_us"),
                Figure("insecure_worker_cpu_us", "us/job", "round trip: worker CPU per job, --insecure"),
                Figure("tls_client_cpu_us", "us/job", "round trip: client CPU per job, TLS", "insecure_client_cpu_us"),
                Figure("insecure_client_cpu_us", "us/job", "round trip: client CPU per job, --insecure"),
            ],
            run_tls_cost,
        ),
        Scenario(
            "thread-hop",
            "one event-loop-to-thread hop and back (anyio.to_thread), and a one-row durable transaction on the"
            " loop and through a hop",
            [
                Figure("hop_us", "us", "to_thread.run_sync of nothing, wall"),
                Figure("hop_cpu_us", "us", "same, CPU"),
                Figure("txn_loop_us", "us", "1-row transaction (fsync) on the loop, wall"),
                Figure("txn_loop_cpu_us", "us", "same, CPU"),
                Figure("txn_thread_us", "us", "1-row transaction (fsync) through a hop, wall", "txn_loop_us"),
                Figure("txn_thread_cpu_us", "us", "same, CPU", "txn_loop_cpu_us"),
            ],
            lambda sz, fx: thread_hop(),
        ),
        Scenario(
            "slow-fsync",
            "fsync slowed by 200 ms (LD_PRELOAD) in the broker: `status` due every 5 ms while a client submits (20 ms"
            " apart), a second lists jobs then submits, and a 2-slot worker runs the jobs; also without the shim;"
            " this tree and $GRIDD_BENCH_BASELINE",
            _slow_fsync_figures(),
            lambda sz, fx: run_slow_fsync(3.0 if sz.mode == "quick" else 8.0),
        ),
    ]
}


def figures_for(scenario: Scenario, sz: Sizes) -> list[Figure]:
    """Scenarios whose figure keys depend on the sizes."""
    if scenario.name == "lease-scale":
        small = sz.lease_sizes[0]
        figs = [Figure(f"lease_ms@{small}", "ms", f"lease 1 job, {small:,} queued")]
        for n in sz.lease_sizes[1:]:
            figs.append(
                Figure(
                    f"lease_ms@{n}",
                    "ms",
                    f"lease 1 job, {n:,} queued",
                    f"lease_ms@{small}",
                    "ratio <= 1.2",
                    _ratio_le(1.2),
                )
            )
        figs += [Figure(f"complete_ms@{n}", "ms", f"complete 1 job, {n:,} queued") for n in sz.lease_sizes]
        figs += [
            Figure(
                f"elsewhere_ms@{n}",
                "ms",
                f"submit, lease, complete 1 job of another queue, {n:,} queued",
                None if n == small else f"elsewhere_ms@{small}",
            )
            for n in sz.lease_sizes
        ]
        return figs
    if scenario.name == "postgresql":
        small = sz.lease_sizes[0]
        return scenario.figures + [
            Figure(f"pg_lease_ms@{n}", "ms", f"PostgreSQL: lease 1 job, {n:,} queued", f"pg_lease_ms@{small}")
            for n in sz.lease_sizes
        ]
    if scenario.name == "broker-memory":
        n = sz.memory_jobs
        ok = _le(200) if n >= 1_000_000 else None
        target = "< 200 MB at 1M" if n >= 1_000_000 else "(< 200 MB at 1M: --full)"
        return [
            Figure("idle_mb", "MB", "broker RSS idle"),
            Figure(f"submitted_{n}_mb", "MB", f"RSS after {n:,} submitted", None, target, ok),
            Figure(f"restarted_{n}_mb", "MB", f"RSS restarted, {n:,} queued", None, target, ok),
        ]
    if scenario.name == "restart":
        n = sz.restart_jobs
        ok = _le(2) if n >= 1_000_000 else None
        target = "< 2 s at 1M" if n >= 1_000_000 else "(< 2 s at 1M: --full)"
        return [
            Figure(f"restart_s@{n}", "s", f"exec to first status, {n:,} jobs", "restart_s@0", target, ok),
            Figure("restart_s@0", "s", "exec to first status, empty DB"),
        ]
    return scenario.figures


def scenario_notes(scenario: Scenario) -> list[str]:
    if scenario.name == "latency":
        return ["the job is shell `true` (a process spawn, ~1-2 ms, is included); task-latency is the no-op task"]
    if scenario.name == "slow-fsync":
        return slow_fsync_notes()
    if scenario.name == "peers":
        return [
            "concurrency: gridd 2 workers x 4 slots; huey -w 2 -k process; rq 2 workers (1 job each, forked);"
            " celery 2 x threads 4; dramatiq 2 processes x 4 threads; arq 2 x max_jobs 4 (poll 5 ms)",
            "gridd's `true` is a shell job; the peers' is subprocess.run(['true']) (arq: create_subprocess_exec)",
            redis_note(),
        ]
    if scenario.name == "huey":
        return [
            "gridd runs a process per job (`true`); huey's no-op runs in-process: compare huey_shell_true for like",
            "gridd_overhead = N / (gridd drain time - xargs time for the same N): gridd's cost beyond spawning",
            redis_note(),
        ]
    return []


def python_version() -> str:
    return sys.version.split()[0]

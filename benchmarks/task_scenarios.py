"""The Python-task scenarios of issue 6: no-op tasks through one broker and two worker processes, every
state change committed, against huey (SqliteHuey, no-op function, 2 worker processes) in the same run."""

from __future__ import annotations

import statistics
import time
from typing import Any

import anyio

from benchmarks.harness import TOKEN, BenchError, cpu_s, grid, run_async, temp_root, transport
from benchmarks.scenarios import _huey_drain, _percentile

TASKS = ["--tasks", "benchmarks.task_app"]
WORKERS = 2
SLOTS = 4


def tls_cost(n: int, iters: int, timeout_s: float) -> dict[str, float]:
    """What TLS costs, against --insecure in the same run: the tasks scenario's end-to-end throughput and
    the task-latency round trip, each measured over TLS and over plain TCP, one right after the other."""
    out: dict[str, float] = {}
    for mode, insecure in (("tls", False), ("insecure", True)):
        with transport(insecure):
            out[f"{mode}_e2e_jobs_s"] = task_throughput(n, timeout_s, e2e_only=True)["e2e_jobs_s"]
            lat = task_latency(iters)
        out[f"{mode}_p50_ms"], out[f"{mode}_p99_ms"] = lat["p50_ms"], lat["p99_ms"]
        for key in ("broker_cpu_us", "worker_cpu_us", "client_cpu_us"):  # CPU: less at the mercy of load
            out[f"{mode}_{key}"] = lat[key]
    out["p50_extra_ms"] = out["tls_p50_ms"] - out["insecure_p50_ms"]
    return out


def task_throughput(n: int, timeout_s: float, *, e2e_only: bool = False) -> dict[str, float]:
    """End to end: `noop.map(range(n), batch=1)`, one job per record, with two workers connected; then a
    pre-filled drain: n no-op task jobs queued, then two workers started."""
    from benchmarks import task_app
    from gridd.client import connect

    out: dict[str, float] = {}
    with grid() as g:
        for _ in range(WORKERS):
            g.add_worker(slots=SLOTS, extra=TASKS)

        def cpu() -> tuple[float, float, float]:
            return cpu_s(g.broker.pid), sum(cpu_s(w.pid) for w in g.workers), time.process_time()

        async def end_to_end() -> float:
            async with connect(g.addr, TOKEN) as client:
                cpu0, t0 = cpu(), time.perf_counter()
                with anyio.fail_after(timeout_s):
                    got = [r async for r in client.map(task_app.noop, range(n), batch=1)]
                t, cpu1 = time.perf_counter() - t0, cpu()
            if got != list(range(n)):
                raise BenchError("the map's results are not the records, in order")
            for key, before, after in zip(("broker", "workers", "client"), cpu0, cpu1, strict=True):
                out[f"e2e_{key}_cpu_us"] = (after - before) / n * 1e6
            return t

        out["e2e_jobs_s"] = n / run_async(end_to_end)
        if e2e_only:
            return out
        out["e2e_batch100_records_s"] = n * 10 / run_async(_map_batched, g.addr, n * 10, timeout_s)
    with grid() as g:

        async def queue() -> list[str]:
            async with connect(g.addr, TOKEN) as client:
                specs = [task_app.noop.spec(_call(task_app.noop, i)) for i in range(n)]
                ids, _ = await client.submit_group(specs)
                return ids

        ids = run_async(queue)
        t0 = time.perf_counter()
        for _ in range(WORKERS):
            g.add_worker(slots=SLOTS, extra=TASKS, wait=False)

        async def drained() -> None:
            async with connect(g.addr, TOKEN) as client:
                with anyio.fail_after(timeout_s):
                    views = await client.wait(ids)
            if any(v.state != "succeeded" for v in views):
                raise BenchError("some no-op tasks did not succeed")

        run_async(drained)
        out["drain_jobs_s"] = n / (time.perf_counter() - t0)
    return out


async def _map_batched(addr: str, n: int, timeout_s: float) -> float:
    from benchmarks import task_app
    from gridd.client import connect

    async with connect(addr, TOKEN) as client:
        t0 = time.perf_counter()
        with anyio.fail_after(timeout_s):
            count = 0
            async for _ in client.map(task_app.noop, range(n), batch=100):
                count += 1
        if count != n:
            raise BenchError(f"{count} results for {n} records")
        return time.perf_counter() - t0


def _call(task: Any, i: int) -> Any:
    from gridd.protocol.messages import TaskCall

    return TaskCall(name=task.name, args=task.encode_call((i,), {}))


def task_latency(iters: int) -> dict[str, float]:
    """One client: submit a no-op task, wait for its result; idle grid, one worker. Also the CPU each
    process spends per job over the timed loop (utime + stime from /proc; the client's own process_time)."""
    from benchmarks import task_app
    from gridd.client import connect

    with grid() as g:
        worker = g.add_worker(slots=2, extra=TASKS)

        async def go() -> tuple[list[float], dict[str, float]]:
            lat: list[float] = []
            async with connect(g.addr, TOKEN) as client:
                deadline = time.perf_counter() + 60
                for i in range(iters + 5):
                    if i == 5:
                        cpu0 = (cpu_s(g.broker.pid), cpu_s(worker.pid), time.process_time())
                    t0 = time.perf_counter()
                    handle = await client.submit_task(task_app.noop, i)
                    if await handle.result() != i:
                        raise BenchError("a no-op task returned something else")
                    if i >= 5:
                        lat.append((time.perf_counter() - t0) * 1000)
                    if time.perf_counter() > deadline:
                        break
                cpu1 = (cpu_s(g.broker.pid), cpu_s(worker.pid), time.process_time())
            per_job = [(b - a) / len(lat) * 1e6 for a, b in zip(cpu0, cpu1, strict=True)]
            return lat, dict(zip(("broker_cpu_us", "worker_cpu_us", "client_cpu_us"), per_job, strict=True))

        lat, cpu = run_async(go)
    return {"p50_ms": _percentile(lat, 50), "p99_ms": _percentile(lat, 99), "mean_ms": statistics.fmean(lat), **cpu}


def huey_noop(n: int, timeout_s: float) -> float:
    with temp_root() as tmp:
        _, drain = _huey_drain("noop", n, tmp / "huey-noop.db", timeout_s)
    return n / drain

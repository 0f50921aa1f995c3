"""The peers scenario (issue 20): gridd, huey, RQ, Celery, dramatiq and arq drain the same pre-filled queue
in one run, on one machine, one after the other.

For each kind of job — a no-op Python function, and `true` run as a process (`subprocess.run(["true"])`
in the peers' tasks; a shell job `true` in gridd, which runs a process per job itself) — N jobs are queued
with no worker running, then two worker processes start, and the drain is timed from their start to the
last job recorded as done, as the huey scenario does. Each system stores a result (or a finished record)
per job. Every drain has a time limit; every process started is stopped (SIGTERM to the process we
started, then SIGKILL of its process group: RQ's forked work horses and dramatiq's worker processes are
in it).

Concurrency, two worker processes each, shaped like gridd's 2 workers x 4 slots where the peer allows it:
- gridd: 2 `gridd worker --slots 4 --tasks benchmarks.task_app`;
- huey: `huey_consumer -w 2 -k process` (2 processes, one job at a time each; as the huey scenario);
- RQ: 2 `rq worker` processes, one job at a time each (RQ has no concurrency inside a worker), each job in
  a work horse forked for it (RQ's default worker class);
- Celery: 2 `celery worker --pool threads --concurrency 4` processes (`--without-gossip --without-mingle
  --without-heartbeat`: the start-up and periodic exchanges between workers are left out);
- dramatiq: `dramatiq --processes 2 --threads 4` (its own supervisor and 2 worker processes of 4 threads);
- arq: 2 `arq` processes, `max_jobs=4`, polling every 5 ms (benchmarks/arq_app.py says why not 0.5 s), quiet.

Redis is a throwaway `redis-server` (benchmarks/redis_server.py), flushed between peers.
`python -m benchmarks.setup_peers` installs what is missing.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio

from benchmarks.harness import TOKEN, VENV_BIN, BenchError, grid, run_async, temp_root
from benchmarks.redis_server import RedisServer, RedisServerError

REPO = Path(__file__).resolve().parent.parent
KINDS = ("noop", "shell_true")
PEERS = ("rq", "celery", "dramatiq", "arq")
WORKERS = 2
SLOTS = 4
POLL_S = 0.002  # how often the benchmark looks at a peer's done count
STOP_GRACE_S = 5.0


# ---- worker processes -----------------------------------------------------------------------------------------


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(VENV_BIN))
    if path is None:
        raise BenchError(f"{name} not installed in {VENV_BIN} (python -m benchmarks.setup_peers)")
    return path


@contextlib.contextmanager
def _processes(argvs: Sequence[Sequence[str]], env: dict[str, str], log_dir: Path) -> Iterator[list[Any]]:
    """Start each argv in a session of its own; at the end SIGTERM each, wait, then SIGKILL its group."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, argv in enumerate(argvs):
            log = open(log_dir / f"{Path(argv[0]).name}-{i}.log", "ab")  # noqa: SIM115 - the child owns it
            procs.append(
                subprocess.Popen(
                    list(argv),
                    cwd=REPO,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )
            log.close()
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_GRACE_S)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group we made: forked children left behind, if any
            proc.wait(timeout=10)


def _log_tail(log_dir: Path) -> str:
    tails = []
    for path in sorted(log_dir.glob("*.log")):
        lines = path.read_text(errors="replace").strip().splitlines()
        if lines:
            tails.append(f"{path.name}: {lines[-1][:200]}")
    return "; ".join(tails) or "(no worker output)"


def _drain(
    name: str,
    n: int,
    argvs: Sequence[Sequence[str]],
    env: dict[str, str],
    log_dir: Path,
    done: Callable[[], int],
    timeout_s: float,
) -> float:
    """Start the workers, poll `done()` until it reaches n: seconds from the first exec to then."""
    t0 = time.perf_counter()
    with _processes(argvs, env, log_dir) as procs:
        deadline = t0 + timeout_s
        while (count := done()) < n:
            if time.perf_counter() > deadline:
                raise BenchError(f"{name} drained {count} of {n} within {timeout_s:g}s; {_log_tail(log_dir)}")
            if any(p.poll() is not None for p in procs):
                raise BenchError(f"{name}: a worker exited early; {_log_tail(log_dir)}")
            time.sleep(POLL_S)
        return time.perf_counter() - t0


# ---- the peers -------------------------------------------------------------------------------------------------


def _env(base: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), GRIDD_BENCH_REDIS=base)


def rq_drain(kind: str, n: int, base: str, log_dir: Path, timeout_s: float) -> tuple[float, float]:
    from redis import Redis
    from rq import Queue
    from rq.registry import FailedJobRegistry, FinishedJobRegistry

    from benchmarks import rq_app

    conn = Redis.from_url(f"{base}/0")
    queue = Queue("default", connection=conn)
    fn = getattr(rq_app, kind)
    t0 = time.perf_counter()
    for start in range(0, n, 1000):
        queue.enqueue_many([Queue.prepare_data(fn, (i,)) for i in range(start, min(n, start + 1000))])
    enqueue_s = time.perf_counter() - t0
    finished, failed = FinishedJobRegistry(queue=queue), FailedJobRegistry(queue=queue)

    def done() -> int:
        if failed.count:
            raise BenchError(f"rq: {failed.count} jobs failed")
        return int(finished.count)

    rq = _tool("rq")
    argvs = [[rq, "worker", "-u", f"{base}/0", "-q", "-n", f"bench-rq-{i}", "default"] for i in range(WORKERS)]
    drain_s = _drain("rq", n, argvs, _env(base), log_dir, done, timeout_s)
    conn.close()
    return enqueue_s, drain_s


def celery_drain(kind: str, n: int, base: str, log_dir: Path, timeout_s: float) -> tuple[float, float]:
    from redis import Redis

    from benchmarks import celery_app

    os.environ["GRIDD_BENCH_REDIS"] = base
    app = importlib.reload(celery_app)
    task = getattr(app, kind)
    t0 = time.perf_counter()
    with app.app.producer_or_acquire() as producer:
        for i in range(n):
            task.apply_async((i,), producer=producer)
    enqueue_s = time.perf_counter() - t0
    results = Redis.from_url(f"{base}/1")
    celery = _tool("celery")
    argvs = [
        [
            *(celery, "-A", "benchmarks.celery_app", "worker", "-n", f"bench-celery-{i}@%h"),
            *("--pool", "threads", "--concurrency", str(SLOTS), "--loglevel", "WARNING"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ]
        for i in range(WORKERS)
    ]
    drain_s = _drain("celery", n, argvs, _env(base), log_dir, results.dbsize, timeout_s)
    bad = 0
    keys = [k for k in results.scan_iter(match="celery-task-meta-*", count=1000)]
    for start in range(0, len(keys), 1000):
        bad += sum(b'"SUCCESS"' not in (v or b"") for v in results.mget(keys[start : start + 1000]))
    results.close()
    app.app.close()
    if bad:
        raise BenchError(f"celery: {bad} of {n} tasks did not succeed")
    return enqueue_s, drain_s


def dramatiq_drain(kind: str, n: int, base: str, log_dir: Path, timeout_s: float) -> tuple[float, float]:
    from redis import Redis

    from benchmarks import dramatiq_app

    os.environ["GRIDD_BENCH_REDIS"] = base
    app = importlib.reload(dramatiq_app)
    actor = getattr(app, kind)
    t0 = time.perf_counter()
    for i in range(n):
        actor.send(i)
    enqueue_s = time.perf_counter() - t0
    conn = Redis.from_url(f"{base}/0")

    def done() -> int:
        if conn.hlen("dramatiq:default.XQ.msgs"):
            raise BenchError("dramatiq: some messages failed (dead-lettered)")
        return n - int(conn.hlen("dramatiq:default.msgs"))

    argvs = [
        [
            *(_tool("dramatiq"), "benchmarks.dramatiq_app"),
            *("--processes", str(WORKERS), "--threads", str(SLOTS)),
        ]
    ]
    drain_s = _drain("dramatiq", n, argvs, _env(base), log_dir, done, timeout_s)
    results = Redis.from_url(f"{base}/1").dbsize()
    conn.close()
    app.broker.close()
    if results != n:
        raise BenchError(f"dramatiq: {results} results stored for {n} messages")
    return enqueue_s, drain_s


def arq_drain(kind: str, n: int, base: str, log_dir: Path, timeout_s: float) -> tuple[float, float]:
    from arq import create_pool
    from arq.connections import RedisSettings
    from redis import Redis

    async def enqueue() -> float:
        pool = await create_pool(RedisSettings.from_dsn(f"{base}/0"))
        t0 = time.perf_counter()
        for i in range(n):
            await pool.enqueue_job(kind, i)
        t = time.perf_counter() - t0
        await pool.aclose()
        return t

    async def failures() -> int:
        pool = await create_pool(RedisSettings.from_dsn(f"{base}/0"))
        results = await pool.all_job_results()
        await pool.aclose()
        return sum(not r.success for r in results) + (n - len(results))

    enqueue_s = anyio.run(enqueue)
    conn = Redis.from_url(f"{base}/0")
    arq = [_tool("arq"), "--custom-log-dict", "benchmarks.arq_app.LOG_CONFIG", "benchmarks.arq_app.WorkerSettings"]
    argvs = [arq for _ in range(WORKERS)]
    drain_s = _drain("arq", n, argvs, _env(base), log_dir, lambda: n - int(conn.zcard("arq:queue")), timeout_s)
    conn.close()
    if bad := anyio.run(failures):
        raise BenchError(f"arq: {bad} of {n} jobs did not succeed")
    return enqueue_s, drain_s


DRAINS: dict[str, Callable[[str, int, str, Path, float], tuple[float, float]]] = {
    "rq": rq_drain,
    "celery": celery_drain,
    "dramatiq": dramatiq_drain,
    "arq": arq_drain,
}


# ---- gridd -----------------------------------------------------------------------------------------------------


def gridd_drain(kind: str, n: int, timeout_s: float) -> tuple[float, float]:
    """n jobs queued in one group (no-op tasks, or shell `true` jobs) into a broker without workers; then two
    workers of 4 slots start. Returns (submit seconds, drain seconds: from the workers' exec to the group's
    `wait` returning, all succeeded)."""
    from benchmarks import task_app
    from benchmarks.task_scenarios import _call
    from gridd.client import connect
    from gridd.protocol.messages import JobSpec

    with grid() as g:

        async def queue() -> list[str]:
            async with connect(g.addr, TOKEN) as client:
                if kind == "noop":
                    specs = [task_app.noop.spec(_call(task_app.noop, i)) for i in range(n)]
                else:
                    specs = [JobSpec(argv=["true"]) for _ in range(n)]
                ids, _ = await client.submit_group(specs)
                return ids

        t0 = time.perf_counter()
        ids = run_async(queue)
        submit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(WORKERS):
            g.add_worker(slots=SLOTS, extra=["--tasks", "benchmarks.task_app"], wait=False)

        async def drained() -> None:
            async with connect(g.addr, TOKEN) as client:
                try:
                    with anyio.fail_after(timeout_s):
                        views = await client.wait(ids)
                except TimeoutError:
                    raise BenchError(f"gridd drain not done within {timeout_s:g}s") from None
            if any(v.state != "succeeded" for v in views):
                raise BenchError(f"gridd: some {kind} jobs did not succeed")

        run_async(drained)
        return submit_s, time.perf_counter() - t0


# ---- the run ---------------------------------------------------------------------------------------------------


def missing() -> str | None:
    """Why the Redis peers cannot run here (None: they can)."""
    if shutil.which("redis-server") is None:
        return "no redis-server on PATH"
    absent = [m for m in ("redis", *PEERS) if importlib.util.find_spec(m) is None]
    if absent:
        return f"not installed in {sys.prefix}: {', '.join(absent)}"
    return None


def run_peers(n: int, timeout_s: float) -> dict[str, Any]:
    """One run: for each kind, gridd, huey, then each Redis peer drain n jobs; {figure key: value}."""
    from benchmarks.scenarios import _huey_drain

    out: dict[str, Any] = {}
    errors: list[str] = []
    why = missing()
    if why:
        errors.append(f"RQ/Celery/dramatiq/arq skipped: {why} (python -m benchmarks.setup_peers)")
    with temp_root("gridd-bench-peers-") as tmp, contextlib.ExitStack() as stack:
        redis = None
        if not why:
            try:
                redis = stack.enter_context(RedisServer())
            except RedisServerError as exc:
                errors.append(f"RQ/Celery/dramatiq/arq skipped: {exc}")
        for kind in KINDS:
            try:
                submit_s, drain_s = gridd_drain(kind, n, timeout_s)
                out[f"gridd_{kind}_jobs_s"] = n / drain_s
                out[f"gridd_{kind}_total_s"] = submit_s + drain_s
            except BenchError as exc:
                errors.append(f"gridd {kind}: {exc}")
            enq, drain = _huey_drain(kind, n, tmp / f"huey-{kind}.db", timeout_s)
            out[f"huey_{kind}_jobs_s"] = n / drain
            out[f"huey_{kind}_total_s"] = enq + drain
            for peer in PEERS if redis else ():
                log_dir = tmp / f"{peer}-{kind}"
                log_dir.mkdir()
                _flush(redis.url(0))
                try:
                    enq, drain = DRAINS[peer](kind, n, f"redis://127.0.0.1:{redis.port}", log_dir, timeout_s)
                except BenchError as exc:
                    errors.append(f"{peer} {kind}: {exc}")
                    continue
                out[f"{peer}_{kind}_jobs_s"] = n / drain
                out[f"{peer}_{kind}_total_s"] = enq + drain
            peers = [out[k] for p in (*PEERS, "huey") if (k := f"{p}_{kind}_jobs_s") in out]
            if peers:
                out[f"best_peer_{kind}_jobs_s"] = max(peers)
    if errors:
        out["_error"] = "; ".join(errors)
    return out


def _flush(url: str) -> None:
    from redis import Redis

    conn = Redis.from_url(url)
    conn.flushall()
    conn.close()

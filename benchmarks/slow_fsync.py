"""The `slow-fsync` scenario (issue 18, item 6): does one slow disk stall every session?

A broker runs with an LD_PRELOAD shim (slow_fsync.c, built here with gcc) that makes every fsync and
fdatasync of its process take GRIDD_SLOW_FSYNC_MS (200 ms) more, and one 2-slot worker runs the jobs. One
client submits `true` jobs, one at a time with a 20 ms pause between (each submit is a durable commit; the
worker's lease and its result are commits too); a second is a person at the CLI who lists the jobs (`gridd
jobs`: a read in a group commit), then submits one, 20 ms apart; a third sends `status` every 5 ms on a
fixed schedule and times each answer from when it was due: what every other session waits for when a
commit holds the event loop. The same
is measured without the shim, and, if $GRIDD_BENCH_BASELINE names another gridd tree (e.g. /work/main),
with that tree's broker and worker, in the same run. Without gcc the scenario is skipped and says why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anyio

from benchmarks.harness import PYTHON, TOKEN, BenchError, bench_env, run_async, seed_ca, stop_process, temp_root

HERE = Path(__file__).resolve().parent
SLOW_MS = 200
SUBMITTERS = 1
SUBMIT_PAUSE_S = 0.02
STATUS_EVERY_S = 0.005
PERSON_PAUSE_S = 0.02


def baseline_tree() -> Path | None:
    """The gridd tree to compare with ($GRIDD_BENCH_BASELINE), if one is given and holds gridd."""
    path = os.environ.get("GRIDD_BENCH_BASELINE")
    return Path(path) if path and (Path(path) / "gridd" / "__init__.py").exists() else None


def skip_reason() -> str | None:
    return None if shutil.which("gcc") else "skipped: no gcc to build the LD_PRELOAD shim that slows fsync"


def notes() -> list[str]:
    out = [f"fsync and fdatasync of the broker's process take {SLOW_MS} ms more (LD_PRELOAD shim) in the 'slow' rows"]
    if skip_reason():
        out.append(f"slow-fsync: {skip_reason()}")
    if baseline_tree() is None:
        out.append("no baseline: set GRIDD_BENCH_BASELINE to another gridd tree (e.g. /work/main) to compare")
    return out


def run_slow_fsync(window_s: float) -> dict[str, float]:
    if skip_reason():
        return {}
    trees = {"tree": HERE.parent}
    if (base := baseline_tree()) is not None:
        trees["base"] = base
    out: dict[str, float] = {}
    with temp_root("gridd-bench-fsync-") as root:
        shim = root / "slow_fsync.so"
        built = subprocess.run(
            ["gcc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(HERE / "slow_fsync.c"), "-ldl"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if built.returncode != 0:
            raise BenchError(f"gcc could not build the shim: {built.stderr.strip()[-200:]}")
        for name, tree in trees.items():
            for disk, preload in (("slow", shim), ("fast", None)):
                with _grid(root / f"{name}-{disk}", tree, preload) as addr:
                    figures = run_async(_measure, addr, window_s)
                out.update({f"{name}_{disk}_{key}": value for key, value in figures.items()})
    return out


@contextlib.contextmanager
def _grid(root: Path, tree: Path, preload: Path | None) -> Iterator[str]:
    """A broker of `tree` (fsync slowed by `preload`) and one 2-slot worker of `tree`; yields the address."""
    data_dir = root / "broker"
    seed_ca(data_dir)
    slow = {"LD_PRELOAD": str(preload), "GRIDD_SLOW_FSYNC_MS": str(SLOW_MS)} if preload else {}
    procs: list[subprocess.Popen[bytes]] = []
    with open(root / "broker.log", "ab") as log:
        procs.append(
            subprocess.Popen(
                [PYTHON, "-m", "gridd", "broker", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=root,  # `python -m` puts the working directory first on sys.path: PYTHONPATH must win
                env=bench_env(PYTHONPATH=str(tree), **slow),
            )
        )
    try:
        addr = _wait_addr(data_dir / "broker.addr", procs[0], timeout_s=60)
        run_as = ["--run-as", "root"] if os.geteuid() == 0 else []  # as root jobs run as nobody otherwise
        with open(root / "worker.log", "ab") as log:
            procs.append(
                subprocess.Popen(
                    [PYTHON, "-m", "gridd", "worker", "--broker", addr, "--slots", "2", "--name", "fsync-w1"]
                    + ["--work-dir", str(root / "work"), *run_as],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    cwd=root,
                    env=bench_env(PYTHONPATH=str(tree)),
                )
            )
        run_async(_wait_worker, addr)
        yield addr
    finally:
        for proc in reversed(procs):
            stop_process(proc, grace_s=10.0)


def _wait_addr(path: Path, broker: subprocess.Popen[bytes], timeout_s: float) -> str:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if path.exists() and (text := path.read_text().strip()):
            return text
        if broker.poll() is not None:
            raise BenchError(f"broker exited with {broker.returncode} (see its log)")
        time.sleep(0.01)
    raise BenchError(f"broker did not write {path} within {timeout_s}s")


async def _wait_worker(addr: str) -> None:
    from gridd.client import connect

    async with connect(addr, TOKEN) as client:
        with anyio.fail_after(30):
            while (await client.status()).workers < 1:  # noqa: ASYNC110 - polling the broker is the point
                await anyio.sleep(0.02)


async def _measure(addr: str, window_s: float) -> dict[str, float]:
    """Submitters (a pause between submits) and one `status` every 5 ms, for `window_s`: their figures."""
    from gridd.client import Client, connect

    status_ms: list[float] = []
    submit_ms: list[float] = []
    stop = time.perf_counter() + window_s

    async def submitter(client: Client) -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await client.submit(["true"])
            submit_ms.append((time.perf_counter() - t0) * 1000)
            await anyio.sleep(SUBMIT_PAUSE_S)

    async def person(client: Client) -> None:
        while time.perf_counter() < stop:
            await client.jobs(limit=20)
            await anyio.sleep(PERSON_PAUSE_S)
            t0 = time.perf_counter()
            await client.submit(["true"])
            submit_ms.append((time.perf_counter() - t0) * 1000)
            await anyio.sleep(PERSON_PAUSE_S)

    async def probe(client: Client, due: float) -> None:
        await client.status()
        status_ms.append((time.perf_counter() - due) * 1000)

    async def prober(client: Client) -> None:
        # On a fixed schedule, not one after another: a broker that stalls 200 ms delays the 40 probes due
        # meanwhile, not just the one in flight (a closed loop would hide the stall: coordinated omission).
        async with anyio.create_task_group() as probes:
            due = time.perf_counter()
            while due < stop:
                probes.start_soon(probe, client, due)
                due += STATUS_EVERY_S
                await anyio.sleep(max(0.0, due - time.perf_counter()))

    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(addr, TOKEN)) for _ in range(SUBMITTERS + 2)]
        with anyio.fail_after(window_s + 60):
            async with anyio.create_task_group() as tg:
                for client in clients[2:]:
                    tg.start_soon(submitter, client)
                tg.start_soon(person, clients[1])
                tg.start_soon(prober, clients[0])
    if not status_ms or not submit_ms:
        raise BenchError("no status or submit answered within the window")
    return {
        "status_p50_ms": _percentile(status_ms, 50),
        "status_p99_ms": _percentile(status_ms, 99),
        "status_max_ms": max(status_ms),
        "submit_p50_ms": statistics.median(submit_ms),
        "submits_s": len(submit_ms) / window_s,
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]

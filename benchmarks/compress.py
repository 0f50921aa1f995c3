"""The `compress` scenario: issue 20's "real workload of short compressions". `gzip -kf` of N files of
text, `xargs -P2 -n1` against `gridd submit --each - -- gzip -kf | gridd wait -` with one 2-slot worker
already connected, for files of 256 KiB (~7 ms of gzip each here) and of 1 MiB (~28 ms). Also the CPU
gridd's own processes spend per job (broker, worker, and the two CLI processes): on two cores busy with
the jobs, every millisecond of it is taken from them.

The files are slices of one corpus of words drawn at random (deterministic), each from its own offset:
alike in how well they compress, not in content, so that no file is compressed from a warm cache of the
last one's output.
"""

from __future__ import annotations

import random
import resource
import subprocess
import time
from pathlib import Path

from benchmarks.harness import GRIDD, BenchError, bench_env, cpu_s, grid, temp_root

SIZES_KIB = (256, 1024)
CORPUS_BYTES = 8 * 1024 * 1024


def files_for(sz_shell_jobs: int) -> dict[int, int]:
    """How many files of each size: the shell-each scenario's job count / 5 of the small ones (400 by
    default), a quarter as many of the large."""
    small = max(20, sz_shell_jobs // 5)
    return {256: small, 1024: max(5, small // 4)}


def run_compress(counts: dict[int, int], timeout_s: float) -> dict[str, float]:
    out: dict[str, float] = {}
    with temp_root() as root:
        corpus = _corpus()
        for kib, n in counts.items():
            listing = _files(root / f"{kib}k", corpus, kib * 1024, n)
            out[f"xargs_s@{kib}k"] = _xargs(listing, timeout_s)
            gridd_s, cpu_ms = _gridd(listing, n, timeout_s)
            out[f"gridd_s@{kib}k"] = gridd_s
            out[f"gridd_cpu_ms@{kib}k"] = cpu_ms
    return out


def _corpus() -> bytes:
    rnd = random.Random(20)
    words = [bytes(rnd.choices(b"abcdefghijklmnopqrstuvwxyz", k=rnd.randint(2, 9))) for _ in range(5000)]
    text = b" ".join(rnd.choices(words, k=CORPUS_BYTES // 5))
    return text[:CORPUS_BYTES]


def _files(where: Path, corpus: bytes, size: int, n: int) -> bytes:
    """n files of `size` bytes under `where`; their absolute paths, one per line (the jobs run elsewhere)."""
    where.mkdir()
    rnd = random.Random(size)
    paths = []
    for i in range(n):
        start = rnd.randrange(len(corpus) - size)
        path = where / f"f{i:05d}"
        path.write_bytes(corpus[start : start + size])
        paths.append(str(path))
    return ("\n".join(paths) + "\n").encode()


def _xargs(listing: bytes, timeout_s: float) -> float:
    t0 = time.perf_counter()
    subprocess.run(["xargs", "-P2", "-n1", "gzip", "-kf"], input=listing, check=True, timeout=timeout_s)
    return time.perf_counter() - t0


def _gridd(listing: bytes, n: int, timeout_s: float) -> tuple[float, float]:
    """Wall seconds of the pipeline, and gridd's CPU per job (ms): broker, worker, the two CLI processes."""
    with grid() as g:
        worker = g.add_worker(slots=2)
        env = bench_env(GRIDD_BROKER=g.addr)
        before = (cpu_s(g.broker.pid), cpu_s(worker.pid), _children_cpu_s())
        t0 = time.perf_counter()
        done = subprocess.run(
            f"set -o pipefail; {GRIDD} submit --each - -- gzip -kf | {GRIDD} wait -",
            shell=True,
            executable="/bin/bash",
            input=listing,
            env=env,
            cwd=g.root,
            capture_output=True,
            timeout=timeout_s,
        )
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise BenchError(f"gridd pipeline exited {done.returncode}: {done.stderr.decode(errors='replace')[-300:]}")
        after = (cpu_s(g.broker.pid), cpu_s(worker.pid), _children_cpu_s())
    return wall, sum(b - a for a, b in zip(before, after, strict=True)) / n * 1000


def _children_cpu_s() -> float:
    """CPU of this process's waited-for children: the pipeline's shell and its two gridd commands."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime

"""Where one no-op task's round trip goes, step by step: `python -m benchmarks.round_trip_timeline [N]`.

One client submits a no-op task and reads its result N times (after 5 warm-ups) on an idle grid with one
worker; each step's time comes from the broker's and the worker's log timestamps (`jobs.submitted`: the
submit committed and fsynced; `job.started`: the lease committed; the worker's `job.started` and `job.ended`;
`job.succeeded`: the completion committed and fsynced) and the client's own clock, all on this machine's
clock. Prints the median of each step between consecutive marks. Not part of `python -m benchmarks`."""

from __future__ import annotations

import itertools
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from benchmarks import task_app
from benchmarks.harness import TOKEN, grid, run_async

MARKS = {
    "broker:jobs.submitted": "broker: the submit committed and fsynced",
    "broker:job.started": "broker: the lease committed",
    "worker:job.started": "worker: starts the task",
    "worker:job.ended": "worker: the task returned",
    "broker:job.succeeded": "broker: the completion committed and fsynced",
}


def main() -> None:
    from gridd.client import connect

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 80
    root = Path(tempfile.mkdtemp(prefix="gridd-timeline-"))
    client: list[tuple[str, float, float, float]] = []
    with grid(root=root) as g:
        g.add_worker(slots=2, extra=["--tasks", "benchmarks.task_app"])

        async def go() -> None:
            async with connect(g.addr, TOKEN) as c:
                for i in range(n + 5):
                    t0 = time.time()
                    handle = await c.submit_task(task_app.noop, i)
                    t1 = time.time()
                    await handle.result()
                    client.append((handle.id, t0, t1, time.time()))

        run_async(go)
    marks: dict[str, dict[str, float]] = {}
    for path in root.glob("*.log"):
        who = "worker" if path.name.endswith(".worker.log") else "broker"
        for line in path.read_text(errors="replace").splitlines():
            event, job, ts = (re.search(p, line) for p in (r"event=(\S+)", r"\b(?:job_id|first)=(\S+)", r"ts=(\S+)"))
            if event and job and ts and f"{who}:{event[1]}" in MARKS:
                at = datetime.fromisoformat(ts[1].replace("Z", "+00:00")).timestamp()
                marks.setdefault(job[1], {}).setdefault(f"{who}:{event[1]}", at)
    steps: dict[str, list[float]] = {}
    for job_id, t0, t1, t2 in client[5:]:
        got = marks.get(job_id, {})
        if len(got) < len(MARKS):
            continue
        points = sorted(
            [("client: sends SubmitJobs", t0), ("client: holds the id", t1), ("client: holds the result", t2)]
            + [(MARKS[k], t) for k, t in got.items()],
            key=lambda p: p[1],
        )
        for (a, ta), (b, tb) in itertools.pairwise(points):
            steps.setdefault(f"{a} -> {b}", []).append((tb - ta) * 1e6)
        steps.setdefault("total", []).append((t2 - t0) * 1e6)
    for step, values in steps.items():
        print(f"{statistics.median(values):8.0f} us  (n={len(values)})  {step}")


if __name__ == "__main__":
    main()

"""What each attempt cost (`show`, `show --json`) and what the grid gave (`gridd report`).

Real broker, real worker processes and real jobs: a job that burns CPU and holds ~50 MiB, a sleeping one,
and jobs of two owners on a plain worker and on a lent desktop (a worker with --idle-probe `true`: its
owner is always away).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest

from tests.e2e.conftest import Grid
from tests.polling import wait_until

# Burns ~0.4 s of CPU while 50 MiB are resident (b"x" * n writes every page).
BURN = """
import time
block = b"x" * (50 << 20)
start = time.process_time()
while time.process_time() - start < 0.4:
    sum(range(1000))
print(len(block))
"""


def _as(grid: Grid, credential: str) -> dict[str, str]:
    return {**grid.env, "GRIDD_TOKEN": credential}


def _attempt(grid: Grid, job: str) -> dict[str, Any]:
    (attempt,) = grid.show(job)["history"]
    assert isinstance(attempt, dict)
    return attempt


def test_each_attempt_shows_its_wall_time_cpu_and_max_rss(grid: Grid) -> None:
    grid.start_broker()
    grid.start_worker("w1", slots=2)
    grid.wait_worker_connected("w1")
    burn = grid.submit(sys.executable, "-c", BURN)
    nap = grid.submit("sleep", "0.6")
    grid.wait_state(burn, "succeeded")
    grid.wait_state(nap, "succeeded")

    burned = _attempt(grid, burn)
    assert burned["worker"] == "w1" and burned["outcome"] == "exited" and burned["exit_code"] == 0
    assert burned["cpu_user_s"] + burned["cpu_system_s"] >= 0.2
    assert burned["max_rss_kb"] >= 40 * 1024
    assert burned["wall_ms"] >= 200
    assert burned["output_bytes"] == len(f"{50 << 20}\n")
    assert burned["lent"] is False

    napped = _attempt(grid, nap)
    assert napped["wall_ms"] >= 600
    assert napped["cpu_user_s"] + napped["cpu_system_s"] < 0.2

    table = grid.ok("show", burn)
    header = next(line for line in table.splitlines() if line.startswith("ATTEMPT"))
    assert header.split()[5:9] == ["WALL", "CPU", "MAXRSS", "OUTPUT"]
    row = table.splitlines()[-1].split()
    assert float(row[-3].rstrip("s")) >= 0.2 and row[-2].endswith("M") and row[-1] == f"{len(str(50 << 20)) + 1}B"


def _report(grid: Grid, *args: str, env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    result = grid.cli("report", *args, "--json", env=env)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return {row["group"]: row for row in json.loads(result.stdout)}


def test_report_sums_attempts_per_owner_queue_and_worker_and_counts_lent_desktops(grid: Grid) -> None:
    grid.start_broker()
    grid.start_worker("plain", queues=["office"])
    grid.start_worker("desk", queues=["lab"], flags=["--idle-probe", "true", "--probe-every", "0.2"])
    grid.wait_worker_connected("plain")
    grid.wait_worker_connected("desk")
    wait_until(lambda: any(w["state"] == "idle" for w in grid.json("workers")), 15, "the desk to be lent")
    alice = grid.ok("token", "create", "--role", "submit", "--name", "alice").strip()

    early = [
        grid.submit(sys.executable, "-c", BURN, flags=["--queue", "office"]),
        grid.submit("sh", "-c", "exit 3", flags=["--queue", "lab", "--max-attempts", "2"]),  # two attempts, failed
    ]
    for job in early:
        grid.wait_state(job, ["succeeded", "failed"])
    middle = time.time()
    wait_until(lambda: time.time() - middle >= 0.5, 5, "the early jobs to be half a second old")
    late = []
    for queue in ("office", "lab"):
        out = grid.cli("submit", "--queue", queue, "--", sys.executable, "-c", BURN, env=_as(grid, alice))
        assert out.returncode == 0, out.stderr
        late.append(out.stdout.decode().strip())
    for job in late:
        grid.wait_state(job, "succeeded")
    jobs = {job: grid.show(job) for job in early + late}
    attempts = [(job, a) for job, view in jobs.items() for a in view["history"]]
    assert len(attempts) == 5

    def expected(key: Any, since: float = 0) -> dict[str, tuple[int, int, int, float, float]]:
        """group -> (jobs, attempts, lent attempts, cpu-hours, wall-hours), from show --json."""
        out: dict[str, list[float]] = {}
        for job, a in attempts:
            if a["ended_ms"] < since * 1000:
                continue
            row = out.setdefault(key(job, a), [0, 0, 0, 0.0, 0.0])
            row[1] += 1
            row[2] += bool(a["lent"])
            row[3] += (a["cpu_user_s"] + a["cpu_system_s"]) / 3600
            row[4] += a["wall_ms"] / 3_600_000
        for job, view in jobs.items():
            last = view["history"][-1]
            if last["ended_ms"] >= since * 1000:
                out[key(job, last)][0] += 1
        return {g: (int(r[0]), int(r[1]), int(r[2]), r[3], r[4]) for g, r in out.items()}

    def check(got: dict[str, dict[str, Any]], want: dict[str, tuple[int, int, int, float, float]]) -> None:
        assert set(got) == set(want)
        for group, (n_jobs, n_attempts, lent, cpu_h, wall_h) in want.items():
            row = got[group]
            assert (row["jobs"], row["attempts"], row["lent_attempts"]) == (n_jobs, n_attempts, lent), group
            assert row["cpu_hours"] == pytest.approx(cpu_h, rel=1e-6, abs=1e-9)
            assert row["wall_hours"] == pytest.approx(wall_h, rel=1e-6, abs=1e-9)

    by_owner = _report(grid, "--by", "owner")
    check(by_owner, expected(lambda job, a: jobs[job]["owner"]))
    assert by_owner["alice"]["succeeded"] == 2 and by_owner["admin"]["succeeded"] == 1
    check(_report(grid, "--by", "queue"), expected(lambda job, a: jobs[job]["queue"]))
    by_worker = _report(grid, "--by", "worker")
    check(by_worker, expected(lambda job, a: a["worker"]))
    # The desk lends: its three attempts (two of the failing job, one of alice's) count as lent.
    assert by_worker["desk"]["lent_attempts"] == 3 and by_worker["plain"]["lent_attempts"] == 0
    assert by_worker["desk"]["lent_cpu_hours"] == by_worker["desk"]["cpu_hours"] > 0

    # --since: only what ended in that time; a submit token sees its own jobs only.
    since = f"{time.time() - middle:.3f}s"
    recent = _report(grid, "--by", "queue", "--since", since)
    check(recent, expected(lambda job, a: jobs[job]["queue"], since=middle))
    assert {g: r["attempts"] for g, r in recent.items()} == {"office": 1, "lab": 1}
    assert _report(grid, "--since", "0s") == {}
    assert set(_report(grid, env=_as(grid, alice))) == {"alice"}

    table = grid.ok("report", "--by", "worker").splitlines()
    assert table[0].split()[:4] == ["WORKER", "JOBS", "OK", "ATTEMPTS"]
    assert [line.split()[0] for line in table[1:]] == ["desk", "plain", "total"]


def test_report_refuses_a_bad_duration(grid: Grid) -> None:
    grid.start_broker()
    result = grid.cli("report", "--since", "soon")
    assert result.returncode == 2
    assert result.stderr.decode().count("\n") == 1 and "--since" in result.stderr.decode()

"""A machine lent to the grid while its owner is away (`gridd worker --when-idle`, `--idle-probe`).

Real broker, real worker process and a real job: the owner is an idle-probe command that the test
controls with a file (present: the owner is busy). The job writes its pid and ticks on, so the test can
see its process stopped (state T in /proc) and going on again.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import JOBS_AS_WORKER
from tests.e2e.conftest import Grid
from tests.polling import wait_until

# Ticks until the file `finish` appears beside it; records its pid and attempt first.
JOB = """
import os, pathlib, sys, time
here = pathlib.Path(sys.argv[1])
with open(here / "job-pids", "a") as f:
    f.write(f"{os.getpid()}\\n")
(here / "attempts").open("a").write(os.environ["GRIDD_ATTEMPT"] + "\\n")
(here / "pid").write_text(str(os.getpid()))
for _ in range(6000):
    if (here / "finish").exists():
        sys.exit(0)
    with open(here / "ticks", "a") as f:
        f.write(".")
    time.sleep(0.02)
sys.exit(3)
"""


def _lent_worker(grid: Grid, *flags: str) -> Path:
    """A worker whose owner is busy while the file it returns exists."""
    busy = grid.root / "owner-busy"
    probe = f"{sys.executable} -c \"import os, sys; sys.exit(os.path.exists('{busy}'))\""
    grid.start_worker("desk", flags=["--idle-probe", probe, "--probe-every", "0.2", "--resume-after", "0", *flags])
    grid.wait_worker_connected("desk")
    return busy


def _worker(grid: Grid) -> dict[str, Any]:
    (worker,) = grid.json("workers")
    assert isinstance(worker, dict)
    return worker


def _wait_worker_state(grid: Grid, state: str) -> None:
    wait_until(lambda: _worker(grid)["state"] == state, 15, f"the worker to be {state}")


def _process_state(pid: int) -> str | None:
    """The state letter in /proc/PID/stat (T: stopped), None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat[stat.rfind(")") + 2]


def _ticks(grid: Grid) -> int:
    path = grid.root / "ticks"
    return path.stat().st_size if path.exists() else 0


def _start_job(grid: Grid, *flags: str) -> tuple[str, int]:
    job = grid.submit(sys.executable, "-c", JOB, str(grid.root), flags=flags)
    grid.wait_state(job, "running")
    pid = int(wait_until(lambda: (grid.root / "pid").exists() and (grid.root / "pid").read_text(), 15, "the pid"))
    wait_until(lambda: _ticks(grid) > 0, 15, "the job to tick")
    return job, pid


def test_owner_back_suspends_the_job_and_keeps_its_lease_then_it_goes_on(grid: Grid) -> None:
    """While the owner is busy the job's processes are stopped, the job stays running on the same
    lease (heartbeats outlive several lease TTLs), and it ends as one attempt once they leave."""
    grid.start_broker(lease_ttl=1.0)
    busy = _lent_worker(grid)
    _wait_worker_state(grid, "idle")
    job, pid = _start_job(grid)

    busy.touch()
    _wait_worker_state(grid, "suspended")
    wait_until(lambda: _process_state(pid) == "T", 15, "the job's process to be stopped")
    stopped_at = _ticks(grid)
    # Nothing to await here but time itself: three lease TTLs pass with the job stopped.
    until = time.monotonic() + 3.0
    while time.monotonic() < until:
        record = grid.show(job)
        assert (record["state"], record["attempts"], record["worker"]) == ("running", 1, "desk")
    assert _ticks(grid) <= stopped_at + 1  # one tick may have been mid-write when it stopped

    busy.unlink()
    _wait_worker_state(grid, "idle")
    wait_until(lambda: _ticks(grid) > stopped_at + 5, 15, "the job to tick again")
    (grid.root / "finish").touch()
    record = grid.wait_state(job, "succeeded")
    assert record["attempts"] == 1 and record["exit_code"] == 0
    assert (grid.root / "attempts").read_text().split() == ["1"]


def test_vacate_hands_the_job_back_without_spending_an_attempt(grid: Grid) -> None:
    """--on-busy vacate ends the job at once and queues it again; it waits while the owner is busy and
    then runs as attempt 1 again, so even a --max-attempts 1 job still succeeds."""
    grid.start_broker()
    busy = _lent_worker(grid, "--on-busy", "vacate")
    job, pid = _start_job(grid, "--max-attempts", "1")

    busy.touch()
    record = grid.wait_state(job, "queued")
    assert record["attempts"] == 0
    wait_until(lambda: _process_state(pid) in (None, "Z"), 15, "the vacated job's process to end")
    _wait_worker_state(grid, "owner-busy")
    assert grid.show(job)["state"] == "queued"  # no lease for a machine its owner has taken back

    busy.unlink()
    grid.wait_state(job, "running")
    (grid.root / "finish").touch()
    record = grid.wait_state(job, "succeeded")
    assert record["attempts"] == 1
    assert (grid.root / "attempts").read_text().split() == ["1", "1"]


def test_a_busy_machine_takes_no_job_until_its_owner_leaves(grid: Grid) -> None:
    """A worker started while its owner works asks for nothing: the job waits, then runs."""
    grid.start_broker()
    busy = grid.root / "owner-busy"
    busy.touch()
    _lent_worker(grid)
    _wait_worker_state(grid, "owner-busy")
    job = grid.submit(sys.executable, "-c", "print('ran')")
    until = time.monotonic() + 1.0  # five looks at the host: the job must stay where it is meanwhile
    while time.monotonic() < until:
        assert grid.show(job)["state"] == "queued"
    busy.unlink()
    grid.wait_state(job, "succeeded")
    assert grid.ok("logs", job) == "ran\n"


def test_a_bad_window_is_one_line_and_exit_2(grid: Grid) -> None:
    grid.start_broker()
    argv = ["worker", "--broker", grid.addr or "", "--window", "25:00-06:00", "--name", "w", *JOBS_AS_WORKER]
    result = grid.cli(*argv)
    assert result.returncode == 2
    assert result.stderr.decode().strip().splitlines() == [
        "gridd: bad time window '25:00-06:00': expected HH:MM-HH:MM, e.g. 20:00-06:00"
    ]

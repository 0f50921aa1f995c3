"""`gridd autoscale` against a real broker: its --up script starts real `gridd worker` processes when a job
waits, its --down script stops them (SIGTERM) once idle. Short --after/--idle/--every keep it to seconds."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import JOBS_AS_WORKER
from tests.e2e.conftest import GRIDD, Grid, stop_process
from tests.polling import wait_until

UP = """#!/bin/sh
# $1 (and GRIDD_AUTOSCALE_COUNT): how many workers to start; each recorded as "NAME PID" in {started}
i=0
while [ "$i" -lt "$1" ]; do
  i=$((i + 1))
  name="auto-$$-$i"
  {python} -m gridd worker --broker {addr} --name "$name" --slots 1 --work-dir {root}/work/"$name" {flags} \\
    >{root}/"$name".log 2>&1 &
  echo "$name $!" >>{started}
done
echo "count=$GRIDD_AUTOSCALE_COUNT" >>{calls}
"""

DOWN = """#!/bin/sh
# The workers named (also in GRIDD_AUTOSCALE_WORKERS): SIGTERM, so each drains and leaves.
for name in "$@"; do
  pid=$(awk -v n="$name" '$1 == n {{ print $2 }}' {started})
  [ -n "$pid" ] && kill -TERM "$pid"
done
echo "workers=$GRIDD_AUTOSCALE_WORKERS" >>{calls}
"""


def _alive(pid: int) -> bool:
    """Running (a zombie its new parent has not reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _started(path: Path) -> dict[str, int]:
    if not path.exists():
        return {}
    return {name: int(pid) for name, pid in (line.split() for line in path.read_text().splitlines() if line)}


def test_autoscale_starts_a_worker_for_a_waiting_job_and_stops_it_once_idle(grid: Grid, tmp_path: Path) -> None:
    addr = grid.start_broker()
    started, calls = tmp_path / "started", tmp_path / "calls"
    fill = {
        "python": shlex.quote(sys.executable),
        "addr": addr,
        "root": shlex.quote(str(tmp_path)),
        "flags": shlex.join(JOBS_AS_WORKER),
        "started": shlex.quote(str(started)),
        "calls": shlex.quote(str(calls)),
    }
    (tmp_path / "up.sh").write_text(UP.format(**fill))
    (tmp_path / "down.sh").write_text(DOWN.format(**fill))
    log = tmp_path / "autoscale.log"
    try:
        job = grid.submit("echo", "ran")  # queued, and no worker at all
        with log.open("wb") as out:
            argv = [*GRIDD, "autoscale", "--broker", addr, "--log-format", "logfmt", "--max", "2"]
            argv += ["--up", f"sh {tmp_path / 'up.sh'}", "--down", f"sh {tmp_path / 'down.sh'}"]
            grid.spawn([*argv, "--after", "1s", "--idle", "2s", "--every", "0.2s"], stdout=out, stderr=out)

        # Up: one worker for the one job (--after 1s), which runs it.
        record = grid.wait_state(job, "succeeded", timeout=30)
        (name,) = _started(started)
        assert record["worker"] == name
        # Down: idle for --idle 2s, it is handed to the down script, which stops it; nothing else is started.
        wait_until(lambda: f"workers={name}" in calls.read_text(), 30, "the down command to name the worker")
        wait_until(lambda: not _alive(_started(started)[name]), 30, "the worker to stop on SIGTERM")
        wait_until(lambda: not grid.json("workers"), 15, "the worker to leave the broker")
        assert calls.read_text().splitlines() == ["count=1", f"workers={name}"]
        out = log.read_text()
        assert "autoscale: starting 1 worker: 1 queued job" in out and f"autoscale: stopping {name}" in out, out
        assert "event=autoscale.up" in out and "event=autoscale.down" in out, out

        # The broker goes away and comes back: the autoscaler waits for it, then serves new work again.
        stop_process(grid.broker)
        wait_until(lambda: "event=autoscale.broker_away" in log.read_text(), 15, "the autoscaler to notice")
        grid.start_broker(port=grid.port)
        again = grid.submit("echo", "again")
        assert grid.wait_state(again, "succeeded", timeout=30)["worker"] != name
        assert len(_started(started)) == 2
    finally:
        for pid in _started(started).values():  # the scripts' workers are not the grid's children
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_autoscale_refuses_bad_bounds_in_one_line_with_exit_2(grid: Grid) -> None:
    for flags in (["--min", "3", "--max", "2"], ["--min", "-1"], ["--after", "soon"], []):
        up = [] if not flags else ["--up", "true"]
        result = subprocess.run(
            [*GRIDD, "autoscale", *up, "--down", "true", *flags], capture_output=True, timeout=30, env=grid.env
        )
        assert result.returncode == 2, (flags, result.stderr)
        assert len(result.stderr.decode().strip().splitlines()) == 1, result.stderr


def test_autoscale_with_a_credential_the_broker_refuses_exits_3_in_one_line(grid: Grid) -> None:
    addr = grid.start_broker()
    env = dict(grid.env, GRIDD_TOKEN=grid.env["GRIDD_TOKEN"][:-4] + "AAAA")
    argv = [*GRIDD, "autoscale", "--broker", addr, "--up", "true", "--down", "true", "--every", "0.2s"]
    result = subprocess.run(argv, capture_output=True, timeout=30, env=env)
    assert result.returncode == 3, result.stderr
    assert len(result.stderr.decode().strip().splitlines()) == 1, result.stderr

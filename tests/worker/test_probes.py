"""Host probes: real commands for CommandProbe; LinuxProbe on this machine and on a made-up /proc and /dev."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gridd.protocol.errors import ConfigError
from gridd.worker.probes import CommandProbe, LinuxProbe
from tests.polling import wait_until

# ---- CommandProbe ------------------------------------------------------------------------------------


def test_a_command_that_exits_0_says_idle_and_one_that_exits_1_says_busy_without_a_warning() -> None:
    with capture_logs() as logs:
        idle = CommandProbe(["sh", "-c", "exit 0"]).sample()
        busy = CommandProbe(["sh", "-c", "exit 1"]).sample()
    assert (idle.idle, idle.owner_load, idle.user_idle_s) == (True, None, None)
    assert (busy.idle, busy.owner_load, busy.user_idle_s) == (False, None, None)
    assert logs == []  # "busy" is an answer, not a failure


@pytest.mark.parametrize(
    ("script", "owner_load", "user_idle_s", "idle"),
    [
        ('echo \'{"owner_load": 0.25, "user_idle_s": 42}\'', 0.25, 42.0, True),
        ("echo '{\"owner_load\": 0.9}'; exit 3", 0.9, None, False),
        ('echo \'{"owner_load": true, "user_idle_s": "soon"}\'', None, None, True),
        ("echo '[0.5, 10]'", None, None, True),
        ("echo 'all quiet'", None, None, True),
    ],
    ids=["both", "load-and-busy", "wrong-types", "not-an-object", "plain-text"],
)
def test_a_command_may_add_owner_load_and_user_idle_as_a_json_object(
    script: str, owner_load: float | None, user_idle_s: float | None, idle: bool
) -> None:
    sample = CommandProbe(["sh", "-c", script]).sample()
    assert (sample.owner_load, sample.user_idle_s, sample.idle) == (owner_load, user_idle_s, idle)


def test_a_command_that_overruns_its_timeout_is_killed_with_its_children_and_counts_as_busy(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    probe = CommandProbe(["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], timeout_s=0.5)
    started = time.monotonic()
    with capture_logs() as logs:
        sample = probe.sample()
    assert time.monotonic() - started < 30  # did not wait for the sleeps (60 s)
    assert sample.idle is False
    assert [(e["event"], e["log_level"], e["reason"]) for e in logs] == [("probe.failed", "warning", "timeout")]
    child = int(pid_file.read_text())
    # The background sleep, which held stdout open, went with the command's group.
    wait_until(lambda: not _alive(child), 10, f"the probe command's child {child} to end with it", every_s=0.01)


def test_a_command_that_cannot_run_counts_as_busy_with_a_warning(tmp_path: Path) -> None:
    with capture_logs() as logs:
        sample = CommandProbe([str(tmp_path / "no-such-probe")]).sample()
    assert sample.idle is False
    assert [(e["event"], e["reason"]) for e in logs] == [("probe.failed", "cannot_run")]


def test_an_empty_command_or_timeout_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="empty"):
        CommandProbe([])
    with pytest.raises(ConfigError, match="timeout"):
        CommandProbe(["true"], timeout_s=0)


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for a reaper that is not us."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


# ---- LinuxProbe on this machine ----------------------------------------------------------------------

BURN = """
import sys, time
end = time.process_time() + 0.4
while time.process_time() < end:
    pass
print("burnt", flush=True)
sys.stdin.read()
"""


def test_the_first_sample_has_no_load_and_cpu_used_by_our_jobs_is_not_owner_load() -> None:
    """Two probes sample at the same moments; only one counts the burning child's group as ours, so the
    difference between their owner loads is the child's CPU share, whatever else this machine is doing."""
    jobs: set[int] = set()
    ours, theirs = LinuxProbe(lambda: jobs), LinuxProbe(lambda: ())
    started = time.monotonic()
    assert ours.sample().owner_load is None
    assert theirs.sample().owner_load is None
    with subprocess.Popen(
        [sys.executable, "-c", BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        jobs.add(child.pid)  # its own session: its process group id is its pid
        ready, _, _ = select.select([child.stdout], [], [], 60)
        assert ready and child.stdout.readline() == b"burnt\n"
        mine, other = ours.sample().owner_load, theirs.sample().owner_load
        child.stdin.close()
    elapsed = time.monotonic() - started
    assert mine is not None and other is not None
    assert 0.0 <= mine <= 1.0 and 0.0 <= other <= 1.0
    child_share = 0.4 / (elapsed * (os.cpu_count() or 1))  # at least this much; elapsed is an overestimate
    assert other - mine >= 0.5 * child_share, (mine, other, child_share)


# ---- LinuxProbe on a made-up /proc and /dev ----------------------------------------------------------

WORKER, LEADER, CHILD, OWNERS = 100, 200, 201, 300


def _write_proc(root: Path, busy: int, total: int, procs: dict[int, tuple[int, int, int, int]]) -> None:
    """/proc/stat with `busy` of `total` ticks busy, and /proc/PID/stat for pid -> (ppid, pgrp, utime, cutime)."""
    root.mkdir(exist_ok=True)
    (root / "stat").write_text(f"cpu  {busy} 0 0 {total - busy} 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n")
    for entry in root.iterdir():
        if entry.name.isdigit() and int(entry.name) not in procs:
            (entry / "stat").unlink()
            entry.rmdir()
    for pid, (ppid, pgrp, utime, cutime) in procs.items():
        (root / str(pid)).mkdir(exist_ok=True)
        fields = f"S {ppid} {pgrp} {pgrp} 0 -1 0 0 0 0 0 {utime} 0 {cutime} 0 20 0 1 0 {pid * 7} 0 0"
        (root / str(pid) / "stat").write_text(f"{pid} (job ) (x) {fields}\n")  # comm may hold ") ("


def test_time_of_a_job_process_reaped_between_samples_is_counted_once(tmp_path: Path) -> None:
    proc, jobs = tmp_path / "proc", {LEADER}
    probe = LinuxProbe(lambda: jobs, proc=proc, dev=tmp_path / "dev", worker_pid=WORKER)
    owner = (1, OWNERS, 0, 0)  # the owner's process: scanned, never ours
    procs = {WORKER: (1, WORKER, 10, 0), LEADER: (WORKER, LEADER, 5, 0), CHILD: (LEADER, LEADER, 50, 0)}
    _write_proc(proc, 1000, 10000, {**procs, OWNERS: owner})
    assert probe.sample().owner_load is None
    # The child burns 30 more ticks and is reaped by the leader (its 80 land in the leader's cutime);
    # leader +2, worker +3, the owner 200: 235 busy ticks of 1000, of which 35 are ours.
    procs = {WORKER: (1, WORKER, 13, 0), LEADER: (WORKER, LEADER, 7, 80)}
    _write_proc(proc, 1235, 11000, {**procs, OWNERS: owner})
    assert probe.sample().owner_load == pytest.approx(0.2)  # not 0.15 (child twice), not 0.23 (reaped left out)
    # The job ends: leader +1, then the worker reaps it (its 88 land in the worker's cutime); worker +2, owner 100.
    jobs.clear()
    _write_proc(proc, 1338, 12000, {WORKER: (1, WORKER, 15, 88), OWNERS: owner})
    assert probe.sample().owner_load == pytest.approx(0.1)  # not 0.013 (leader twice)


def test_user_idle_is_the_time_since_the_newest_terminal_input_and_none_without_terminals(tmp_path: Path) -> None:
    dev, now = tmp_path / "dev", time.time()
    probe = LinuxProbe(lambda: (), dev=dev)
    assert probe.sample().user_idle_s is None  # no /dev at all
    for name, ago in [("pts/0", 100), ("pts/3", 5000), ("pts/ptmx", 0), ("tty1", 9000), ("input/event2", 700)]:
        (dev / name).parent.mkdir(parents=True, exist_ok=True)
        (dev / name).touch()
        os.utime(dev / name, (now - ago, now - 9999))
    idle = probe.sample().user_idle_s
    assert idle is not None and 100 <= idle < 130  # pts/0; ptmx is the multiplexer, not a terminal
    os.utime(dev / "input" / "event2", (now - 10, now))
    idle = probe.sample().user_idle_s
    assert idle is not None and 10 <= idle < 40

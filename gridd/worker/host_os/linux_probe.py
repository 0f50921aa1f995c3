"""Linux: how busy the machine's owner keeps it, from /proc and /dev (gridd.worker.probes says what is
measured and its limits); and an admin's probe command run in its own process group.

Part of the host_os interface (gridd.worker.host_os re-exports it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gridd.worker.policy import HostSample

TERMINALS = ("pts/[0-9]*", "tty[0-9]*", "input/event*")  # globs under /dev


@dataclass(frozen=True, slots=True)
class _Proc:
    ppid: int
    ticks: int  # utime+stime+cutime+cstime, in USER_HZ clock ticks like /proc/stat


_ProcKey = tuple[int, int]  # (pid, start time): a pid reused by a new process is another process


class LinuxProbe:
    """Samples owner load and user idle time from /proc and /dev (see the module docstring)."""

    def __init__(
        self,
        own_pids: Callable[[], Iterable[int]],
        *,
        proc: Path = Path("/proc"),
        dev: Path = Path("/dev"),
        worker_pid: int | None = None,
    ) -> None:
        self._own_pgids = own_pids
        self._proc = proc
        self._dev = dev
        self._worker_pid = os.getpid() if worker_pid is None else worker_pid
        self._last: tuple[int, int, dict[_ProcKey, _Proc]] | None = None  # busy ticks, all ticks, own processes

    def sample(self) -> HostSample:
        busy, total = self._cpu_ticks()
        own = self._own_processes(set(self._own_pgids()))
        load: float | None = None
        if self._last is not None and total > self._last[1]:
            last_busy, last_total, last_own = self._last
            owner_ticks = (busy - last_busy) - _own_ticks(last_own, own)
            load = min(max(owner_ticks / (total - last_total), 0.0), 1.0)
        self._last = (busy, total, own)
        return HostSample(owner_load=load, user_idle_s=self._user_idle_s())

    def _cpu_ticks(self) -> tuple[int, int]:
        with open(self._proc / "stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]  # "cpu" user nice system idle iowait irq softirq steal
        user, nice, system, _idle, _iowait, irq, softirq, _steal = fields + [0] * (8 - len(fields))
        return user + nice + system + irq + softirq, sum(fields)

    def _own_processes(self, pgids: set[int]) -> dict[_ProcKey, _Proc]:
        names = [e.name for e in os.scandir(self._proc) if e.name.isdigit()] if pgids else [str(self._worker_pid)]
        own: dict[_ProcKey, _Proc] = {}
        for name in names:
            try:
                stat = (self._proc / name / "stat").read_text()
            except OSError:
                continue  # ended since the scan
            # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after the last ")"
            f = stat[stat.rfind(")") + 2 :].split()
            if int(name) == self._worker_pid or int(f[2]) in pgids:
                own[(int(name), int(f[19]))] = _Proc(ppid=int(f[1]), ticks=sum(int(v) for v in f[11:15]))
        return own

    def _user_idle_s(self) -> float | None:
        newest: float | None = None
        for pattern in TERMINALS:
            for path in self._dev.glob(pattern):
                try:
                    atime = path.stat().st_atime
                except OSError:
                    continue
                newest = atime if newest is None else max(newest, atime)
        return None if newest is None else max(time.time() - newest, 0.0)


def _own_ticks(before: dict[_ProcKey, _Proc], now: dict[_ProcKey, _Proc]) -> int:
    """CPU ticks our processes used between two scans (see the module docstring on reaped processes)."""
    ticks = sum(p.ticks - (before[k].ticks if k in before else 0) for k, p in now.items())
    by_pid = {key[0]: key for key in before}

    def reaped_by_ours(key: _ProcKey) -> bool:
        parent = by_pid.get(before[key].ppid)
        if parent is None:
            return False  # its parent is not ours (init, or the owner's shell)
        return parent in now or reaped_by_ours(parent)

    ticks -= sum(p.ticks for k, p in before.items() if k not in now and reaped_by_ours(k))
    return max(ticks, 0)


def run_probe_command(argv: Sequence[str], timeout_s: float) -> tuple[int, bytes]:
    """Run an admin's probe command; its exit status and stdout. Its own session, so that a timeout
    (subprocess.TimeoutExpired) kills the command's children too: one left holding stdout would
    otherwise keep us reading until it ended."""
    with subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    ) as proc:
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):  # it may have ended just now
                os.killpg(proc.pid, signal.SIGKILL)
            raise  # leaving the block closes stdout and reaps the command
        return proc.returncode, out

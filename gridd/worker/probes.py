"""How the worker looks at its host: blocking probes that return a HostSample for gridd.worker.policy.

Rule: probes block (file reads, a child process), so the agent calls `sample()` from a thread, every few
seconds; they never decide anything, the policy does.

LinuxProbe reads /proc and /dev:
- Owner load is the machine's CPU busy fraction between two samples (user+nice+system+irq+softirq over
  all time in /proc/stat, i.e. over elapsed time x CPUs; steal is other VMs' use, not the owner's), less
  the CPU time gridd's own processes used in the same interval: the worker itself and every process whose
  process group is one of `own_pids()` (the jobs' groups), found by scanning /proc/*/stat.
- A process's CPU time counts its reaped children (utime+stime+cutime+cstime): the short-lived processes
  of a job (a compiler run by make) are never seen by a scan, but their time lands in their own parent's
  cutime, so leaving it out would make a busy job look like a busy owner, and the job would suspend itself.
  A process that vanished between samples moved its whole time into its reaper's cutime; when that reaper
  is ours (directly or through vanished parents), the part already counted is taken off again, so nothing
  is counted twice. Time of processes reaped by init is lost after their last sample (a few seconds).
- User idle is the time since the newest access time of /dev/pts/N, /dev/ttyN and /dev/input/event*: the
  kernel touches a terminal's atime on input, which is how `w` computes IDLE. Limits: a desktop session
  (X, Wayland) types into no terminal, and not every kernel touches /dev/input atimes, so such a machine
  may look away while its owner works: use CommandProbe (e.g. around xprintidle) there. Jobs given a
  terminal would count as a user. In a container, /proc/stat is the whole host's (the owner load includes
  other containers) and /dev holds no host terminals (user idle is None: away).

CommandProbe runs an admin's command: exit status 0 is idle, anything else busy; a JSON object on stdout
may add `owner_load` and `user_idle_s` (shown, but the verdict decides alone). A command that cannot run or
times out counts as busy: the owner comes first.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from gridd.protocol.errors import ConfigError
from gridd.worker.policy import HostSample

log = structlog.get_logger()

TERMINALS = ("pts/[0-9]*", "tty[0-9]*", "input/event*")  # globs under /dev


class HostProbe(Protocol):
    """A way to look at the host."""

    def sample(self) -> HostSample:
        """Blocks (reads files, runs a command); call it from a thread."""
        ...


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


class CommandProbe:
    """Asks an admin's command whether the host is idle (see the module docstring)."""

    def __init__(self, argv: Sequence[str], timeout_s: float = 10) -> None:
        if not argv:
            raise ConfigError("the idle probe command is empty")
        if timeout_s <= 0:
            raise ConfigError(f"the idle probe timeout must be positive, not {timeout_s}")
        self._argv = list(argv)
        self._timeout_s = timeout_s

    def sample(self) -> HostSample:
        try:
            status, out = self._run()
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = "timeout" if isinstance(exc, subprocess.TimeoutExpired) else "cannot_run"
            log.warning("probe.failed", command=self._argv[0], reason=reason, error=str(exc))
            return HostSample(owner_load=None, user_idle_s=None, idle=False)
        extra = _json_object(out)
        return HostSample(
            owner_load=_number(extra.get("owner_load")), user_idle_s=_number(extra.get("user_idle_s")), idle=status == 0
        )

    def _run(self) -> tuple[int, bytes]:
        # Its own session, so that a timeout kills the command's children too: one left holding stdout
        # would otherwise keep us reading until it ended.
        with subprocess.Popen(
            self._argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        ) as proc:
            try:
                out, _ = proc.communicate(timeout=self._timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):  # it may have ended just now
                    os.killpg(proc.pid, signal.SIGKILL)
                raise  # leaving the block closes stdout and reaps the command
            return proc.returncode, out


def _json_object(out: bytes) -> dict[str, object]:
    try:
        value = json.loads(out)
    except ValueError:
        return {}  # plain text (or nothing): only the exit status speaks
    return value if isinstance(value, dict) else {}


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

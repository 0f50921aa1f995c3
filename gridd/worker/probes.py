"""How the worker looks at its host: blocking probes that return a HostSample for gridd.worker.policy.

Rule: probes block (file reads, a child process), so the agent calls `sample()` from a thread, every few
seconds; they never decide anything, the policy does.

LinuxProbe (in gridd.worker.host_os, with everything else the worker asks of the system) reads /proc
and /dev:
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

import json
import subprocess
from collections.abc import Sequence
from typing import Protocol

import structlog

from gridd.protocol.errors import ConfigError
from gridd.worker.host_os import LinuxProbe, run_probe_command
from gridd.worker.policy import HostSample

__all__ = ["CommandProbe", "HostProbe", "LinuxProbe"]

log = structlog.get_logger()


class HostProbe(Protocol):
    """A way to look at the host."""

    def sample(self) -> HostSample:
        """Blocks (reads files, runs a command); call it from a thread."""
        ...


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
        return run_probe_command(self._argv, self._timeout_s)


def _json_object(out: bytes) -> dict[str, object]:
    try:
        value = json.loads(out)
    except ValueError:
        return {}  # plain text (or nothing): only the exit status speaks
    return value if isinstance(value, dict) else {}


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

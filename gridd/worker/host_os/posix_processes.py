"""POSIX job processes: spawned in their own session (process group), as a job user if given, signalled
as a group, reaped with wait4 for their own resource usage.

Part of the host_os interface (gridd.worker.host_os re-exports it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from gridd.worker.host_os.posix_spawn import try_spawn
from gridd.worker.host_os.posix_users import JobUser, is_self


class JobProcess(Protocol):
    """A started job process: its pid (and process group id), and its status once reaped."""

    pid: int
    returncode: int | None


@dataclass(frozen=True, slots=True)
class Usage:
    """What one job's process used, as reaped."""

    cpu_user_s: float
    cpu_system_s: float
    max_rss_kb: int
    returncode: int  # as Popen's: the exit code, or -N for signal N


def spawn(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    stdin: IO[bytes] | int | None,
    out: int,
    err: int,
    user: JobUser | None,
) -> JobProcess:
    """Start a job's command in its own session (its process group id is its pid). `stdin` None: no
    input. As another user: in the child before exec, setgroups to exactly the user's groups, then
    setgid, then setuid. A user who is the worker itself (same uids, gids and groups: a root worker
    told `--run-as root`) needs none of that, and without it CPython starts the child with vfork
    instead of copying the worker's whole address space with fork (several times the cost per job).
    As the worker's own user, posix_spawn starts it where it does what Popen would (posix_spawn.py)."""
    if user is not None and is_self(user):
        user = None
    if user is None:
        fd = stdin if stdin is None or isinstance(stdin, int) else stdin.fileno()
        started = try_spawn(argv, cwd, env, fd, out, err)
        if started is not None:
            return started
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL if stdin is None else stdin,
        stdout=out,
        stderr=err,
        start_new_session=True,
        close_fds=True,
        user=None if user is None else user.uid,
        group=None if user is None else user.gid,
        extra_groups=None if user is None else list(user.groups),
    )


def stop_group(pgid: int) -> None:
    """Suspend every process of the group (SIGSTOP)."""
    _signal_group(pgid, signal.SIGSTOP)


def continue_group(pgid: int) -> None:
    """Continue a suspended group (SIGCONT)."""
    _signal_group(pgid, signal.SIGCONT)


def terminate_group(pgid: int) -> None:
    """Ask the group to end (SIGTERM)."""
    _signal_group(pgid, signal.SIGTERM)


def kill_group(pgid: int) -> None:
    """End the group at once (SIGKILL)."""
    _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def reap(proc: JobProcess) -> Usage:
    """Reap the job's process with wait4: its own rusage, not the worker's children's in all (other jobs
    run at the same time). It counts the job's process and the descendants it waited for; a grandchild
    the job left behind (killed with its group) is reaped by init and counts nowhere. Its max RSS is
    never below the worker's own peak at the spawn: Linux carries the forked copy's peak across exec."""
    while True:
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except InterruptedError:
            continue
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        return Usage(round(usage.ru_utime, 3), round(usage.ru_stime, 3), usage.ru_maxrss, code)  # KiB on Linux


def exit_status(returncode: int) -> tuple[int, str | None]:
    """The status a shell would report for a reaped process (128+N for signal N), and the name of the
    signal that killed it (None if it exited)."""
    if returncode >= 0:
        return returncode, None
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = str(-returncode)
    return 128 - returncode, name


def spawn_failure(exc: OSError) -> tuple[int, str]:
    """A shell's status and gridd's outcome for a command that could not be started."""
    if isinstance(exc, FileNotFoundError):
        return 127, "not_found"
    if isinstance(exc, PermissionError) or exc.errno in (errno.ENOEXEC, errno.EACCES, errno.EISDIR):
        return 126, "not_executable"
    return 126, "error"


def hand_over(cwd: Path, user: JobUser) -> None:
    """Give the attempt's directory and all in it (a bundle's copy) to the job's user. Bottom up: until
    the top is handed over, the worker alone can enter it, so nothing in it changes under the walk."""
    for root, dirs, files in os.walk(cwd, topdown=False):
        for name in (*files, *dirs):
            os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)
    os.chown(cwd, user.uid, user.gid)
    os.chmod(cwd, 0o700)

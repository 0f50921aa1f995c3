"""POSIX users and the worker's own standing: who jobs run as, what runs as them, the work dir's lock.

Part of the host_os interface (gridd.worker.host_os re-exports it): a user is a uid, a primary gid and
supplementary groups; killing everything of a user is `kill -1` run as that user.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger()

_SWEEP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class JobUser:
    """A user jobs run as, looked up once at start."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups, the primary one included
    home: str

    def env(self) -> dict[str, str]:
        """What a login as this user would set: jobs that look at HOME must not find the worker's."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}


def effective_uid() -> int:
    return os.geteuid()


def lookup_user(name: str) -> JobUser | None:
    """The user named `name`, with its groups; None if there is none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return JobUser(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)


def is_self(user: JobUser) -> bool:
    """Whether a process started as `user` would hold the worker's own credentials: real, effective and
    saved uid and gid, and the groups it is in (the primary one counted among them on both sides: a
    process whose list is empty is still in its gid's group). Looked at each time (a few system calls)."""
    return (
        os.getresuid() == (user.uid,) * 3
        and os.getresgid() == (user.gid,) * 3
        and {*os.getgroups(), user.gid} == {*user.groups, user.gid}
    )


def give_to_root(path: Path) -> None:
    """Make `path` root's (a worker run as root keeps its directories to itself)."""
    os.chown(path, 0, os.getegid())


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def may_pass(st: os.stat_result, user: JobUser) -> bool:
    """Whether `user` may pass through the directory of status `st` (its x bit for them)."""
    if user.uid == 0:
        return True
    if st.st_uid == user.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in user.groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def kill_all_of(user: JobUser) -> None:
    """Kill every process running as `user` (a dedicated pool user whose job ended): one system call from
    that uid, which no fork can outrun."""
    try:
        subprocess.run(
            ["/bin/sh", "-c", "kill -s KILL -- -1"],  # every process this uid may signal, but itself
            user=user.uid,
            group=user.gid,
            extra_groups=[],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
            timeout=_SWEEP_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.error("worker.sweep_failed", user=user.name, error=str(exc))


def live_processes() -> list[tuple[int, int]]:
    """(pid, real uid) of every live process (zombies left out: they run nothing)."""
    found: list[tuple[int, int]] = []
    if not os.path.isdir("/proc"):
        return found  # no procfs: nothing to look at (the end-of-job kill does not need it)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", encoding="utf-8", errors="replace") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue  # gone meanwhile
        if status.get("State", "").strip().startswith("Z"):
            continue
        found.append((int(entry.name), int(status.get("Uid", "-1").split()[0])))
    return found


def lock_exclusive(path: Path) -> int | None:
    """An exclusive lock on the file `path` (made if need be), held by the open descriptor returned;
    None if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd

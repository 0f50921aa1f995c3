"""Who a worker's command jobs run as: the worker's own user, one other user (`--run-as`), or a user per
slot (`--run-as-pool`).

Rules:
- Only root may start a process as another user. `gridd worker` started as root runs command jobs as
  `--run-as USER` (default `nobody`; root only when named) or each as a free user of `--run-as-pool`,
  which must name at least one user per slot (else the worker does not start: exit 2). `--run-as` or
  `--run-as-pool` on a worker not run as root is a usage error. A worker whose jobs run as its own user
  says so at start (`worker.jobs_share_uid`): they can read its credential and environment.
- A job's processes get the user's uid, primary gid and supplementary groups (setgroups to exactly
  those: none of root's stay), and HOME, USER and LOGNAME of that user.
- Jobs of one `--run-as` user share a uid: they may read each other's environment (/proc/PID/environ),
  enter each other's directories by name and signal each other. A pool user is held by one job at a
  time; when that job ends, every process still running under its uid is killed (kill -1 from that uid:
  one system call, no fork can outrun it) before another job gets the user, so nothing of one job
  lives on into the next. Pool users must therefore be dedicated to this worker: one that runs
  processes when the worker starts is refused, naming them.
- Python tasks (`--tasks`) run inside the worker process, as its user: they are code the worker's
  admin installed, and the submitter gives them arguments only.
- The job's attempt directory is its own (0700), and it must be able to reach it by its absolute path:
  every directory above the work dir must let the job users pass (x), checked at start.
"""

from __future__ import annotations

import stat
import threading
from collections.abc import Sequence
from pathlib import Path

import msgspec
import structlog

from gridd.config import WorkerConfig
from gridd.protocol.errors import ConfigError
from gridd.worker.host_os import JobUser, effective_uid, kill_all_of, live_processes, lookup_user, may_pass, user_name

__all__ = ["JobUser", "JobUsers", "announce", "check_dedicated", "check_reachable", "job_users", "lookup", "sweep"]

log = structlog.get_logger()

DEFAULT_RUN_AS = "nobody"
TAKE_WAIT_S = 30.0  # a pool user held by a cancelled attempt's thread comes free once it has cleaned up


class JobUsers:
    """The users a worker's command jobs run as. Taken and given back from the attempts' threads.

    One `--run-as` user is shared: `take` always returns it. A pool hands each free user to one job at
    a time, and `give_back` kills what that job left running before the user is free again."""

    def __init__(self, users: Sequence[JobUser], *, dedicated: bool) -> None:
        self.users = tuple(users)
        self.dedicated = dedicated
        self._free = list(self.users)
        self._changed = threading.Condition()

    def take(self, wait_s: float = TAKE_WAIT_S) -> JobUser | None:
        """A user for one job (None if no pool user came free within `wait_s`)."""
        if not self.dedicated:
            return self.users[0]
        with self._changed:
            if not self._changed.wait_for(lambda: bool(self._free), timeout=wait_s):
                return None
            return self._free.pop(0)

    def give_back(self, user: JobUser) -> None:
        """The job that held `user` is over (its process group killed and reaped)."""
        if not self.dedicated:
            return
        sweep(user)
        with self._changed:
            self._free.append(user)
            self._changed.notify()


def with_default(config: WorkerConfig, euid: int) -> WorkerConfig:
    """`gridd worker`'s rule: a worker started as root runs jobs as nobody unless told otherwise.
    (make_agent itself does what its config says: None runs jobs as the worker's own user.)"""
    if euid == 0 and config.run_as is None and not config.run_as_pool:
        return msgspec.structs.replace(config, run_as=DEFAULT_RUN_AS)
    return config


def job_users(config: WorkerConfig, euid: int) -> JobUsers | None:
    """The users `config` names, checked (ConfigError: exit 2); None when jobs run as the worker itself."""
    run_as, pool = config.run_as, config.run_as_pool
    if run_as is not None and pool:
        raise ConfigError("give --run-as or --run-as-pool, not both")
    if run_as is None and not pool:
        return None
    if euid != 0:
        flag = "--run-as" if run_as is not None else "--run-as-pool"
        raise ConfigError(
            f"{flag} needs a worker started as root (this one runs as {user_name(euid)}):"
            f" start it as root, or drop {flag} (its jobs then run as {user_name(euid)})"
        )
    if run_as is not None:
        user = lookup(run_as, "--run-as")
        return None if user.uid == euid else JobUsers([user], dedicated=False)
    users = [lookup(name, "--run-as-pool") for name in pool]
    if len(users) < config.slots:
        raise ConfigError(
            f"--run-as-pool names {len(users)} user{'s' if len(users) != 1 else ''} for {config.slots} slots:"
            " give at least one user per slot, or fewer --slots"
        )
    uids: dict[int, str] = {}
    for user in users:
        if user.uid == 0:
            raise ConfigError(f"--run-as-pool: {user.name} is root (uid 0); a pool holds unprivileged users only")
        if user.uid in uids:
            raise ConfigError(
                f"--run-as-pool: {uids[user.uid]} and {user.name} are the same user (uid {user.uid});"
                " each slot needs a user of its own"
            )
        uids[user.uid] = user.name
    return JobUsers(users, dedicated=True)


def lookup(name: str, flag: str) -> JobUser:
    user = lookup_user(name)
    if user is None:
        raise ConfigError(f"{flag}: there is no user {name!r} on this machine")
    return user


def check_dedicated(users: JobUsers) -> None:
    """Refuse a pool user that runs processes now: its processes are killed whenever a job of it ends."""
    if not users.dedicated:
        return
    by_uid = {u.uid: u for u in users.users}
    for pid, uid in live_processes():
        user = by_uid.get(uid)
        if user is not None:
            raise ConfigError(
                f"--run-as-pool: user {user.name} runs processes now (pid {pid}); pool users must be dedicated"
                f" to this worker's jobs (their processes are killed when a job ends): stop them"
                f" (pkill -KILL -u {user.name}) or choose other users"
            )


def check_reachable(work_dir: Path, users: JobUsers) -> None:
    """Refuse a work dir a job user could not reach by its path: each directory above it must let it pass
    (those that do not exist yet are not looked at: call it again once they do)."""
    for directory in reversed(work_dir.parents):
        try:
            st = directory.stat()
        except FileNotFoundError:
            return
        for user in users.users:
            if not may_pass(st, user):
                raise ConfigError(
                    f"jobs run as {user.name} cannot reach the work directory {work_dir}: {directory} is mode"
                    f" {stat.S_IMODE(st.st_mode):04o}; give --work-dir in a directory they may pass"
                    " (e.g. /var/lib/gridd-worker/work)"
                )


def announce(users: JobUsers | None, tasks: bool) -> None:
    """The start-up line saying who jobs run as, and what they can reach because of it."""
    if users is None:
        log.warning(
            "worker.jobs_share_uid",
            user=user_name(effective_uid()),
            why="jobs run as this worker's user: they can read its credential and environment, and each other's;"
            " start the worker as root with --run-as-pool to keep them out",
        )
        return
    names = ",".join(u.name for u in users.users)
    log.info("worker.jobs_run_as", users=names, per_slot=users.dedicated)
    if tasks:
        log.info("worker.tasks_run_as_worker", user=user_name(effective_uid()))


def sweep(user: JobUser) -> None:
    """Kill every process running as `user` (a dedicated pool user whose job ended)."""
    kill_all_of(user)

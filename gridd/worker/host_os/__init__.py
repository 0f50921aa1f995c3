"""host_os: everything the worker asks of the operating system, behind one interface.

The rest of the worker imports this package only, never a module inside it: a Windows host would add
its own modules here and choose them below by `sys.platform`, touching nothing else. What it must provide:

Job users (posix_users)
    JobUser                      a user jobs run as (name, uid, gid, groups, home; `env()`)
    effective_uid()              who the worker runs as (0: it may start jobs as other users)
    is_self(user)                whether a process as `user` would hold the worker's own credentials
    give_to_root(path)           make a file or directory root's (a worker run as root)
    lookup_user(name)            a JobUser, or None if there is no such user
    user_name(uid)               a uid's name, for messages
    may_pass(stat, user)         whether the user may pass through a directory of that status
    kill_all_of(user)            end every process of a dedicated pool user
    live_processes()             (pid, uid) of every live process
    lock_exclusive(path)         an exclusive lock on a file, held by the descriptor returned (None: held)

Job processes (posix_processes)
    spawn(argv, cwd, env, stdin, out, err, user)   start a command in a group of its own, as `user`
                                 (a JobProcess: posix_spawn where it does what Popen would, else Popen)
    stop_group / continue_group / terminate_group / kill_group(pgid)   act on the whole group
    reap(proc) -> Usage          wait for it and take its own CPU time and max RSS (wait4)
    exit_status(returncode)      a shell's status (128+N for signal N) and the signal's name
    spawn_failure(exc)           a shell's status and gridd's outcome for a command that did not start
    hand_over(dir, user)         give an attempt's directory and all in it to the job's user

Output and exit (posix_pipes)
    Spool(make_file, limit)      a pipe for one output stream, drained into a file (made at its first
                                 byte) up to `limit` bytes
    ExitWatch(proc)              drain spools until the process exits or time runs out (`pump`), calling
                                 a tick meanwhile (a running job's output passed on)
    drain(spools, deadline)      what is left in the pipes once the group is gone

The host's owner (linux_probe)
    LinuxProbe(own_pgids)        samples owner load and user idle time (a HostProbe)
    run_probe_command(argv, timeout_s)   an admin's idle probe, killed with its children on timeout
"""

from __future__ import annotations

from gridd.worker.host_os.linux_probe import LinuxProbe, run_probe_command
from gridd.worker.host_os.posix_pipes import ExitWatch, Spool, drain
from gridd.worker.host_os.posix_processes import (
    JobProcess,
    Usage,
    continue_group,
    exit_status,
    hand_over,
    kill_group,
    reap,
    spawn,
    spawn_failure,
    stop_group,
    terminate_group,
)
from gridd.worker.host_os.posix_users import (
    JobUser,
    effective_uid,
    give_to_root,
    is_self,
    kill_all_of,
    live_processes,
    lock_exclusive,
    lookup_user,
    may_pass,
    user_name,
)

__all__ = [
    "ExitWatch",
    "JobProcess",
    "JobUser",
    "LinuxProbe",
    "Spool",
    "Usage",
    "continue_group",
    "drain",
    "effective_uid",
    "exit_status",
    "give_to_root",
    "hand_over",
    "is_self",
    "kill_all_of",
    "kill_group",
    "live_processes",
    "lock_exclusive",
    "lookup_user",
    "may_pass",
    "reap",
    "run_probe_command",
    "spawn",
    "spawn_failure",
    "stop_group",
    "terminate_group",
    "user_name",
]

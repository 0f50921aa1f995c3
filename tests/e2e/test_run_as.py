"""Jobs cannot steal the worker's credential, nor reach each other (issue 17): a worker started as root runs
them as `--run-as USER` or a user per slot from `--run-as-pool`.

Real `gridd worker` subprocesses started as root, real throwaway users (useradd), real jobs that try.
These need root (only root may start a process as another user): skipped otherwise; CI runs as root.
The work dirs live in a directory of /tmp that others may pass (pytest's tmp dir is root's alone, 0700).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import GRIDD, TOKEN, Grid
from tests.polling import wait_until

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root may run jobs as other users")

USERADD_TIMEOUT_S = 30


@contextlib.contextmanager
def throwaway_users(count: int) -> Iterator[list[str]]:
    """`count` new system users with no home and no shell, deleted afterwards."""
    made: list[str] = []
    try:
        for _ in range(count):
            name = f"gridd-test-{secrets.token_hex(4)}"
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                check=True,
                capture_output=True,
                timeout=USERADD_TIMEOUT_S,
            )
            made.append(name)
        yield made
    finally:
        for name in made:
            _kill_processes_of(pwd.getpwnam(name).pw_uid)  # a test that failed may have left some (else userdel fails)
            subprocess.run(["userdel", name], capture_output=True, timeout=USERADD_TIMEOUT_S, check=False)


def _kill_processes_of(uid: int) -> None:
    """SIGKILL, by pid, the processes running as `uid` (a user this test made: only its jobs)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if entry.stat().st_uid == uid:
                os.kill(int(entry.name), signal.SIGKILL)


@contextlib.contextmanager
def passable_dir() -> Iterator[Path]:
    """A fresh directory under /tmp that other users may pass through (0711), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="gridd-runas-"))
    try:
        path.chmod(0o711)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def uid_of(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


def start(grid: Grid, base: Path, flags: list[str], slots: int = 1) -> int:
    """Start worker w1 with `flags`, its work dir in `base`; returns its pid once connected."""
    grid.start_broker()
    proc = grid.start_worker("w1", slots=slots, flags=flags, work_dir=base / "work")
    grid.wait_worker_connected("w1")
    return proc.pid


@needs_root
def test_gridd_worker_started_as_root_runs_jobs_as_nobody_unless_told(grid: Grid) -> None:
    with passable_dir() as base:
        grid.start_broker()
        argv = [*GRIDD, "worker", "--broker", grid.addr or "", "--name", "w1", "--work-dir", str(base / "work")]
        grid.spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        grid.wait_worker_connected("w1")
        out = grid.ok("submit", "--wait", "--", "sh", "-c", "id -un; stat -c '%U %a' . ..")
    assert out.split() == ["nobody", "nobody", "700", "root", "711"], out


@needs_root
def test_a_root_worker_given_no_work_dir_keeps_it_in_var_lib_where_its_jobs_can_reach_it(grid: Grid) -> None:
    """`sudo gridd worker --broker HOST` from a private home (0700, as pytest's tmp dirs are) just works."""
    name = f"gridd-test-{secrets.token_hex(4)}"
    work = Path("/var/lib/gridd-worker") / name
    try:
        grid.start_broker()
        grid.spawn([*GRIDD, "worker", "--broker", grid.addr or "", "--name", name], stdout=subprocess.DEVNULL)
        grid.wait_worker_connected(name)
        out = grid.ok("submit", "--wait", "--", "sh", "-c", "id -un; pwd")
        assert out.split()[0] == "nobody" and out.split()[1].startswith(f"{work}/"), out
    finally:
        grid.close()  # the worker lets go of its work dir before it is removed
        for leftover in (work, work.with_name(f"{name}.bundles")):
            shutil.rmtree(leftover, ignore_errors=True)
        work.with_name(f"{name}.lock").unlink(missing_ok=True)


@needs_root
def test_a_job_runs_as_the_run_as_user_and_cannot_read_the_workers_environment_or_credential_file(
    grid: Grid,
) -> None:
    with throwaway_users(1) as (user,), passable_dir() as base:
        credential = base / "worker.credential"  # as a --token-file would be: the worker's, 0600
        credential.write_text(TOKEN + "\n")
        credential.chmod(0o600)
        grid.env = {**grid.env, "GRIDD_TOKEN_FILE": str(credential), "GRIDD_SETTING": "worker-only"}
        worker_pid = start(grid, base, ["--run-as", user])
        script = f"""
            echo ppid=$PPID uid=$(id -u) groups=$(id -G)
            cat /proc/$PPID/environ 2>&1; echo environ_rc=$?
            cat {credential} 2>&1; echo credential_rc=$?
            ls /proc/$PPID/fd 2>&1 >/dev/null; echo fds_rc=$?
            echo dir=$(stat -c '%u %a' .)
            env
        """
        out = grid.ok("submit", "--wait", "--", "sh", "-c", script)
        uid, home = uid_of(user), pwd.getpwnam(user).pw_dir

    assert f"ppid={worker_pid} uid={uid} " in out, out  # the worker's own child, as that user
    groups = out.split("groups=", 1)[1].split("\n", 1)[0].split()
    assert "0" not in groups, out  # none of root's groups stayed
    for what in ("environ", "credential", "fds"):
        assert f"{what}_rc=0" not in out, out
    assert out.count("Permission denied") >= 3, out
    assert f"dir={uid} 700" in out, out  # its attempt directory is its own alone
    assert TOKEN not in out and "worker-only" not in out, out  # not through /proc, the file or its environment
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line and line.isascii())
    assert env.get("USER") == user and env.get("HOME") == home
    assert sorted(k for k in env if k.startswith("GRIDD_")) == ["GRIDD_ATTEMPT", "GRIDD_JOB_ID", "GRIDD_WORKER"]


@needs_root
def test_with_a_pool_two_running_jobs_cannot_read_each_others_files_environment_or_signal_each_other(
    grid: Grid,
) -> None:
    with throwaway_users(2) as users, passable_dir() as base:
        shared = base / "shared"  # where the jobs meet: B says where it is, A says when it is done
        shared.mkdir(mode=0o1777)
        shared.chmod(0o1777)
        start(grid, base, ["--run-as-pool", ",".join(users)], slots=2)
        job_b = grid.submit(
            "sh",
            "-c",
            f"""
            echo secret-file-b > mine.txt
            stat -c '%U %a' . > {shared}/b.stat
            pwd > {shared}/b.cwd.tmp; echo $$ > {shared}/b.pid; mv {shared}/b.cwd.tmp {shared}/b.cwd
            i=0; while [ ! -e {shared}/done ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
            """,
            flags=["--env", "SECRET_B=secret-env-b"],
        )
        script_a = f"""
            i=0; while [ ! -e {shared}/b.cwd ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
            B=$(cat {shared}/b.pid); D=$(cat {shared}/b.cwd)
            echo uid=$(id -u)
            cat "$D/mine.txt" 2>&1; echo file_rc=$?
            ls "$D" 2>&1; echo dir_rc=$?
            ls "$(dirname "$D")" 2>&1; echo work_dir_rc=$?
            cat /proc/$B/environ 2>&1; echo environ_rc=$?
            kill -0 $B 2>&1; echo kill_rc=$?
            kill -STOP $B 2>&1; echo stop_rc=$?
            touch {shared}/done
        """
        out_a = grid.ok("submit", "--wait", "--", "sh", "-c", script_a)
        grid.wait_state(job_b, "succeeded")
        owner_b, mode_b = (shared / "b.stat").read_text().split()
        uids = {uid_of(u) for u in users}
        uid_b = uid_of(owner_b)

    uid_a = int(out_a.split("uid=", 1)[1].split()[0])
    assert {uid_a, uid_b} == uids, (out_a, owner_b)  # one user each
    assert mode_b == "700"
    for what in ("file", "dir", "work_dir", "environ", "kill", "stop"):
        assert f"{what}_rc=0" not in out_a, out_a
    assert "secret-file-b" not in out_a and "secret-env-b" not in out_a, out_a
    assert out_a.count("Permission denied") >= 4 and "Operation not permitted" in out_a, out_a


@needs_root
def test_a_process_a_pool_users_job_left_behind_is_killed_before_the_user_runs_another_job(grid: Grid) -> None:
    with throwaway_users(1) as users, passable_dir() as base:
        start(grid, base, ["--run-as-pool", users[0]])
        # setsid: out of the job's process group, which is all the runner itself kills. The job ends once
        # that process runs (it wrote its pid).
        script = """
            setsid sh -c 'echo $$ > pid; exec sleep 60' >/dev/null 2>&1 &
            i=0; while [ ! -s pid ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; cat pid
        """
        left = int(grid.ok("submit", "--wait", "--", "sh", "-c", script))

        def gone() -> bool:
            try:
                status = Path(f"/proc/{left}/status").read_text()
            except FileNotFoundError:
                return True
            return "\nState:\tZ" in status  # dead, waiting for its (new) parent to reap it

        wait_until(gone, 10, f"the escaped process {left} to be killed")


@needs_root
def test_the_bundle_copy_is_the_job_users_and_the_cache_is_out_of_its_reach(grid: Grid) -> None:
    with throwaway_users(1) as (user,), passable_dir() as base:
        start(grid, base, ["--run-as", user])
        src = grid.root / "app"
        src.mkdir()
        (src / "data.txt").write_text("bundle data\n")
        grid.ok("bundle", "push", "app", str(src))
        cache = base / "work.bundles"
        script = f"""
            cat data.txt; echo owner=$(stat -c %U data.txt)
            echo more >> data.txt && touch new.txt && echo wrote_rc=$?
            ls {cache} 2>&1; echo cache_ls_rc=$?
            touch {cache}/blobs/x 2>&1; echo cache_write_rc=$?
        """
        out = grid.ok("submit", "--bundle", "app", "--wait", "--", "sh", "-c", script)
        cache_mode = cache.stat().st_mode & 0o777
        blob_owners = {p.stat().st_uid for p in cache.rglob("*")}

    assert "bundle data\n" in out and f"owner={user}" in out and "wrote_rc=0" in out, out
    assert "cache_ls_rc=0" not in out and "cache_write_rc=0" not in out, out
    assert cache_mode == 0o700 and blob_owners == {0}


@needs_root
def test_a_pool_smaller_than_the_slots_is_refused_in_one_line(grid: Grid) -> None:
    with throwaway_users(1) as users:
        grid.start_broker()
        done = grid.cli("worker", "--broker", grid.addr or "", "--slots", "2", "--run-as-pool", users[0])
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, lines
    assert "--run-as-pool names 1 user for 2 slots" in lines[0]


@needs_root
def test_a_work_dir_the_job_users_cannot_reach_is_refused_in_one_line_before_anything_is_made(grid: Grid) -> None:
    grid.start_broker()
    work = grid.root / "work" / "w1"  # pytest's tmp dir is root's alone (0700): nobody cannot pass it
    done = grid.cli("worker", "--broker", grid.addr or "", "--name", "w1", "--work-dir", str(work))
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, lines
    assert f"jobs run as nobody cannot reach the work directory {work}" in lines[0] and "--work-dir" in lines[0]
    assert not (grid.root / "work").exists()

"""Who jobs run as, and what of the worker they inherit (issue 17): the rules of --run-as and --run-as-pool,
the refusal of --run-as by a worker not started as root, the warning such a worker gives, and a job's
environment without the worker's GRIDD_* settings. None of these needs root (tests/e2e/test_run_as.py
has those that do): where the test process is root, the worker under test is started as nobody."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from gridd.config import WorkerConfig
from gridd.protocol.errors import ConfigError
from gridd.worker.job_users import JobUsers, check_reachable, job_users, lookup, with_default
from tests.conftest import TOKEN, client_of, running_broker, running_worker
from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
NOBODY = pwd.getpwnam("nobody")
CLI_TIMEOUT_S = 30


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory under /tmp that anyone may use (pytest's tmp dir is 0700: nobody could not enter it)."""
    path = Path(tempfile.mkdtemp(prefix="gridd-jobusers-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# As root, the worker under test becomes nobody. The interpreter may live where nobody may not read
# (/root/.pyenv on CI), so it starts as root, imports what `gridd worker` needs, drops to nobody
# (setgroups, setgid, setuid: for good, as a job's start does) and only then runs the command.
AS_NOBODY = f"""
import os, sys
import anyio._backends._asyncio, structlog.dev, gridd.cli.main, gridd.cli.flags, gridd.cli.serve, gridd.worker.app
import gridd.worker.job_users, gridd.logs, gridd.client.connection, encodings.idna
os.setgroups([]); os.setgid({NOBODY.pw_gid}); os.setuid({NOBODY.pw_uid})
sys.exit(gridd.cli.main.main(sys.argv[1:]))
"""


def gridd_worker_not_root(base: Path, *args: str, stderr: int | None = None) -> subprocess.Popen[bytes]:
    """`gridd worker ARGS` run by an ordinary user: this one, or nobody when the tests run as root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDD_")}
    env.update(GRIDD_TOKEN=TOKEN, HOME=str(base), PYTHONPATH=str(ROOT))
    env.update(XDG_DATA_HOME=str(base / "data"), XDG_CONFIG_HOME=str(base / "config"))
    gridd = [sys.executable, "-c", AS_NOBODY] if os.geteuid() == 0 else [sys.executable, "-m", "gridd"]
    argv = [*gridd, "worker", "--broker", "127.0.0.1:1", "--log-format", "logfmt", *args]
    return subprocess.Popen(
        argv,
        env=env,
        cwd=base,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr if stderr is not None else subprocess.PIPE,
    )


def test_run_as_on_a_worker_not_started_as_root_is_a_usage_error_in_one_line(open_dir: Path) -> None:
    for flags in (["--run-as", "nobody"], ["--run-as-pool", "nobody,daemon"]):
        proc = gridd_worker_not_root(open_dir, *flags, "--name", "desk", "--work-dir", str(open_dir / "w"))
        _, err = proc.communicate(timeout=CLI_TIMEOUT_S)
        lines = err.decode().strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, lines
        assert f"{flags[0]} needs a worker started as root" in lines[0], lines
        assert not (open_dir / "w").exists()  # refused before anything was made


def test_a_worker_not_run_as_root_says_once_at_start_that_its_jobs_can_read_its_credential(open_dir: Path) -> None:
    log = open_dir / "worker.log"
    with log.open("wb") as out:
        proc = gridd_worker_not_root(open_dir, "--name", "desk", "--work-dir", str(open_dir / "w"), stderr=out.fileno())
    try:
        # It goes on trying to reach the broker (there is none): the warning comes before that.
        wait_until(lambda: "worker.disconnected" in log.read_text(), 20, "the worker to try the broker")
    finally:
        proc.terminate()
        proc.wait(timeout=CLI_TIMEOUT_S)
    warnings = [line for line in log.read_text().splitlines() if "event=worker.jobs_share_uid" in line]
    assert len(warnings) == 1 and "level=warning" in warnings[0], log.read_text()
    assert "can read its credential" in warnings[0]


async def test_a_job_does_not_inherit_the_workers_gridd_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDD_TOKEN", "worker-token-value")
    monkeypatch.setenv("GRIDD_TOKEN_FILE", "/etc/gridd/worker.credential")
    monkeypatch.setenv("GRIDD_SOME_SETTING", "worker-only")
    monkeypatch.setenv("KEPT_FOR_JOBS", "yes")
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr), client_of(b) as client:
        job_id = await client.submit(["env"], env={"GRIDD_MINE": "the submitter's"}, max_attempts=1)
        with anyio.fail_after(20):
            await client.wait([job_id])
        out = (await client.output(job_id))[0].decode()
    gridd = sorted(line.split("=", 1)[0] for line in out.splitlines() if line.startswith("GRIDD_"))
    assert gridd == ["GRIDD_ATTEMPT", "GRIDD_JOB_ID", "GRIDD_MINE", "GRIDD_WORKER"], out
    assert "KEPT_FOR_JOBS=yes" in out.splitlines()


def test_a_root_worker_runs_jobs_as_nobody_unless_told() -> None:
    assert with_default(WorkerConfig(), 0).run_as == "nobody"
    assert with_default(WorkerConfig(run_as="root"), 0).run_as == "root"
    assert with_default(WorkerConfig(run_as_pool=["a", "b"]), 0).run_as is None
    assert with_default(WorkerConfig(), 1000).run_as is None  # not root: jobs run as the worker itself


def test_run_as_root_named_runs_jobs_as_the_worker_itself() -> None:
    assert job_users(WorkerConfig(run_as="root"), 0) is None
    assert job_users(WorkerConfig(), 1000) is None
    users = job_users(WorkerConfig(run_as="nobody", slots=4), 0)
    assert users is not None and [u.uid for u in users.users] == [NOBODY.pw_uid] and not users.dedicated


@pytest.mark.parametrize(
    ("config", "says"),
    [
        (WorkerConfig(run_as_pool=["nobody"], slots=2), "--run-as-pool names 1 user for 2 slots"),
        (WorkerConfig(run_as="nobody", run_as_pool=["nobody"]), "not both"),
        (WorkerConfig(run_as="no-such-user-here"), "there is no user 'no-such-user-here'"),
        (WorkerConfig(run_as_pool=["nobody", "root"], slots=2), "root is root (uid 0)"),
        (WorkerConfig(run_as_pool=["nobody", "nobody"], slots=2), "the same user"),
    ],
)
def test_bad_run_as_settings_are_refused_saying_why(config: WorkerConfig, says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        job_users(config, 0)


def test_a_pool_user_serves_one_job_at_a_time() -> None:
    users = JobUsers([lookup("nobody", "--run-as-pool")], dedicated=True)
    first = users.take()
    assert first is not None and users.take(wait_s=0.05) is None  # held: the next job waits for it


def test_a_work_dir_job_users_cannot_reach_is_refused_naming_the_directory(open_dir: Path) -> None:
    closed = open_dir / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    users = JobUsers([lookup("nobody", "--run-as")], dedicated=False)
    with pytest.raises(ConfigError, match=f"jobs run as nobody cannot reach the work directory .*: {closed} is mode"):
        check_reachable(closed / "work", users)
    closed.chmod(0o711)
    check_reachable(closed / "work", users)  # passing through is all it needs

"""A worker only ever empties a work directory it made (or adopted empty) and marked as its own; its name
is one safe path component. Issue 16: `--work-dir .` deleted the current directory's files, `--name ..` the
broker's database and token, `--name /some/abs/path` that path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gridd.config import WorkerConfig
from gridd.protocol.errors import ConfigError, WorkDirNotOwned
from gridd.worker.app import make_agent
from gridd.worker.workdir import MARKER
from tests.conftest import TOKEN

CLI_TIMEOUT_S = 20  # a worker that does not refuse runs on: the test fails when this passes


def _user_files(root: Path) -> dict[Path, bytes]:
    """A few files a person would hate to lose, in `root` and a folder of it."""
    files = {root / "thesis.tex": b"chapter one", root / "data" / "results.csv": b"1,2,3", root / ".hidden": b"x"}
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


def _assert_intact(files: dict[Path, bytes]) -> None:
    assert {path: path.read_bytes() for path in files if path.exists()} == files


def _gridd_worker(tmp_path: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDD_")}
    env.update(GRIDD_TOKEN=TOKEN, HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "data"))
    return subprocess.run(
        [sys.executable, "-m", "gridd", "worker", "--broker", "127.0.0.1:1", "--log-format", "logfmt", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def test_gridd_worker_with_work_dir_dot_refuses_a_directory_of_user_files_and_deletes_nothing(tmp_path: Path) -> None:
    project = tmp_path / "project"
    files = _user_files(project)
    done = _gridd_worker(tmp_path, "--name", "desk", "--work-dir", ".", cwd=project)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(project) in lines[0] and "nothing was deleted" in lines[0], lines
    _assert_intact(files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]  # no lock or cache made beside it either


def test_gridd_worker_name_dot_dot_is_a_usage_error_and_the_brokers_files_survive(tmp_path: Path) -> None:
    data = tmp_path / "data" / "gridd"  # the default data dir: database, WAL, token
    files = {data / "gridd.db": b"db", data / "gridd.db-wal": b"wal", data / "token": b"secret"}
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    done = _gridd_worker(tmp_path, "--name", "..")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--name '..' is not a worker name" in lines[0], lines
    _assert_intact(files)


def test_gridd_worker_name_holding_an_absolute_path_is_a_usage_error_and_that_path_survives(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    files = _user_files(victim)
    done = _gridd_worker(tmp_path, "--name", str(victim))
    assert done.returncode == 2, done.stderr
    assert "is not a worker name" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    _assert_intact(files)


@pytest.mark.parametrize("name", ["..", ".", "a/b", "/etc", "x" * 65, "desk 1", "", "naïve"])
def test_worker_config_refuses_a_name_that_is_not_one_safe_path_component(name: str) -> None:
    with pytest.raises(ConfigError, match="not a worker name"):
        WorkerConfig(name=name)


@pytest.mark.parametrize("name", ["desk-17", "lab.pc_2", "x" * 64, "..."])
def test_worker_config_takes_letters_digits_dot_dash_underscore_up_to_64(name: str) -> None:
    assert WorkerConfig(name=name).name == name


def test_make_agent_refuses_a_work_dir_of_user_files_and_deletes_nothing(tmp_path: Path) -> None:
    files = _user_files(tmp_path / "mine")
    with pytest.raises(WorkDirNotOwned, match="holds files and is not a gridd worker's"):
        make_agent(WorkerConfig(name="desk", work_dir=tmp_path / "mine"), TOKEN, tmp_path / "data")
    _assert_intact(files)
    assert not (tmp_path / "mine" / MARKER).exists()


def test_a_work_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes").write_bytes(b"keep")
    with pytest.raises(WorkDirNotOwned, match="not a directory"):
        make_agent(WorkerConfig(name="desk", work_dir=tmp_path / "notes"), TOKEN, tmp_path / "data")
    assert (tmp_path / "notes").read_bytes() == b"keep"


def test_an_empty_existing_work_dir_is_adopted_and_marked(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    make_agent(WorkerConfig(name="desk", work_dir=tmp_path / "work"), TOKEN, tmp_path / "data")
    assert [p.name for p in (tmp_path / "work").iterdir()] == [MARKER]


def test_the_workers_own_dir_is_emptied_at_start_keeping_the_marker_and_the_instance_id(tmp_path: Path) -> None:
    config = WorkerConfig(name="desk", token=TOKEN)
    first = make_agent(config, TOKEN, tmp_path)
    work = tmp_path / "worker" / "desk"
    assert (work / MARKER).is_file()
    leftover = work / "7.123456789"  # an attempt directory the previous run was killed in
    (leftover / "sub").mkdir(parents=True)
    (leftover / "sub" / "out.bin").write_bytes(b"x")
    (work / "stray").write_bytes(b"y")
    os.close(first._lock)  # type: ignore[arg-type] # that worker stopped
    second = make_agent(config, TOKEN, tmp_path)
    assert [p.name for p in work.iterdir()] == [MARKER]
    assert second._s.instance == first._s.instance and len(first._s.instance) == 32


def test_cleaning_never_follows_a_symlink_a_job_left_out_of_the_work_dir(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    files = _user_files(outside)
    config = WorkerConfig(name="desk", token=TOKEN)
    first = make_agent(config, TOKEN, tmp_path / "data")
    work = tmp_path / "data" / "worker" / "desk"
    attempt = work / "3.987654321"
    attempt.mkdir()
    (attempt / "link-to-dir").symlink_to(outside)  # inside an attempt dir, as a job leaves it
    (attempt / "link-to-file").symlink_to(outside / "thesis.tex")
    (work / "top-link").symlink_to(outside)  # at the top of the work dir
    (work / "broken").symlink_to(tmp_path / "nowhere")
    os.close(first._lock)  # type: ignore[arg-type]
    make_agent(config, TOKEN, tmp_path / "data")
    assert [p.name for p in work.iterdir()] == [MARKER]  # the links are gone...
    _assert_intact(files)  # ...and what they pointed at is not

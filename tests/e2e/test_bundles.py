"""Code bundles end to end (issue 5): `gridd bundle push`, `submit --bundle`, workers that cache contents
and fetch only what changed, a version pin, and results that record the version they ran in."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.e2e.conftest import Grid
from tests.polling import wait_until

RUN_SH = '#!/bin/sh\necho "bundle=$GRIDD_BUNDLE dir=$(basename "$PWD")"\ncat data.txt lib/greeting.txt\n'


def make_source(root: Path, data: str = "one\n") -> Path:
    src = root / "src"
    (src / "lib").mkdir(parents=True, exist_ok=True)
    (src / "run.sh").write_text(RUN_SH)
    (src / "run.sh").chmod(0o755)
    (src / "data.txt").write_text(data)
    (src / "lib" / "greeting.txt").write_text("hello from the bundle\n")
    return src


def fetched(grid: Grid, worker: str) -> list[dict[str, str]]:
    """The worker's `bundle.fetched` log lines, as key=value dicts."""
    text = grid.worker_log(worker).read_text(errors="replace")
    return [dict(re.findall(r"(\w+)=(\S+)", line)) for line in text.splitlines() if "event=bundle.fetched" in line]


def push(grid: Grid, src: Path, name: str = "demo") -> tuple[str, str]:
    done = grid.cli("bundle", "push", name, str(src))
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().strip(), done.stderr.decode()


def run_wait(grid: Grid, *flags: str, command: tuple[str, ...] = ("./run.sh",)) -> str:
    done = grid.cli("submit", *flags, "--wait", "--", *command)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def test_a_job_runs_in_its_bundle_and_a_changed_file_is_all_that_travels(grid: Grid) -> None:
    grid.start_broker()
    grid.start_worker("w1")
    src = make_source(grid.root)

    version, report = push(grid, src)
    assert version == "demo@1" and "new version" in report and "uploaded 3 (" in report
    version, report = push(grid, src)  # unchanged: no new version, nothing uploaded
    assert version == "demo@1" and "uploaded 0 (0 bytes), 3 already there" in report

    out = run_wait(grid, "--bundle", "demo")
    assert out.splitlines()[0].startswith("bundle=demo@1 dir=")
    assert out.splitlines()[1:] == ["one", "hello from the bundle"]
    assert [(f["bundle"], f["files"], f["cached"]) for f in fetched(grid, "w1")] == [("demo@1", "3", "0")]

    (src / "data.txt").write_text("two, longer\n")
    version, report = push(grid, src)
    assert version == "demo@2"
    assert "uploaded 1 (12 bytes), 2 already there" in report

    job = grid.submit("./run.sh", flags=["--bundle", "demo"])
    record = grid.wait_state(job, "succeeded")
    assert record["bundle"] == "demo@2"
    assert grid.ok("logs", job).splitlines()[1] == "two, longer"
    # Only the changed file travelled to the worker, which held version 1's files.
    latest = fetched(grid, "w1")[-1]
    assert (latest["bundle"], latest["files"], latest["bytes"], latest["cached"]) == ("demo@2", "1", "12", "2")
    shown = grid.ok("show", job)
    assert "bundle     demo@2" in shown and re.search(r"BUNDLE\n1\s.*demo@2$", shown, re.M | re.S)

    # A version pin runs the old files, after a newer version exists.
    assert run_wait(grid, "--bundle", "demo@1").splitlines()[1] == "one"
    versions = grid.json("bundle", "list", "demo")
    assert [(v["version"], v["files"]) for v in versions] == [(1, 3), (2, 3)]


def test_a_job_cannot_change_the_bundle_the_next_job_gets(grid: Grid) -> None:
    grid.start_broker()
    grid.start_worker("w1")
    push(grid, make_source(grid.root))
    vandal = "chmod -R u+w . && echo spoiled > data.txt && echo 'exit 9' >> run.sh && rm lib/greeting.txt && pwd"
    first_dir = run_wait(grid, "--bundle", "demo", command=("sh", "-c", vandal)).strip()
    out = run_wait(grid, "--bundle", "demo")
    assert out.splitlines()[1:] == ["one", "hello from the bundle"]
    assert not Path(first_dir).exists()  # each attempt had a fresh directory of its own
    # Many jobs at once, each in its own copy, executable bits as pushed.
    grid.ok(
        "submit",
        "--bundle",
        "demo",
        "--array",
        "1-3",
        "--wait",
        "--",
        "sh",
        "-c",
        "test -x run.sh && ! test -x data.txt",
    )


def test_two_workers_each_fetch_and_a_restarted_worker_keeps_its_cache(grid: Grid) -> None:
    grid.start_broker()
    grid.start_worker("w1", queues=["a"])
    grid.start_worker("w2", queues=["b"])
    push(grid, make_source(grid.root))
    for queue in ("a", "b"):
        assert run_wait(grid, "--bundle", "demo", "--queue", queue).splitlines()[1] == "one"
    for worker in ("w1", "w2"):
        assert [(f["bundle"], f["files"]) for f in fetched(grid, worker)] == [("demo@1", "3")]

    grid.workers["w1"].terminate()
    grid.workers["w1"].wait(timeout=15)
    grid.start_worker("w1", queues=["a"])
    assert run_wait(grid, "--bundle", "demo", "--queue", "a").splitlines()[1] == "one"
    wait_until(lambda: len(fetched(grid, "w1")) == 2, 10, "the restarted worker's bundle.fetched line")
    assert fetched(grid, "w1")[-1]["files"] == "0"  # nothing travelled again


def test_bad_bundles_and_directories_are_refused_in_one_line(grid: Grid) -> None:
    grid.start_broker()
    src = make_source(grid.root)
    cases = [
        (("submit", "--bundle", "nope", "--", "./run.sh"), 1, "no bundle is named 'nope'"),
        (("bundle", "push", "demo", str(grid.root / "missing")), 2, "does not exist"),
        (("bundle", "push", "demo", str(src / "run.sh")), 2, "is not a directory"),
        (("bundle", "push", ".hidden", str(src)), 2, "is not a bundle name"),
        (("submit", "--bundle", "../up", "--", "true"), 2, "does not name a bundle"),
        (("bundle", "list", "nope"), 1, "no bundle is named 'nope'"),
    ]
    for args, code, message in cases:
        done = grid.cli(*args)
        err = done.stderr.decode()
        assert (done.returncode, len(err.splitlines())) == (code, 1), (args, done.returncode, err)
        assert message in err, (args, err)
    push(grid, src)
    done = grid.cli("submit", "--bundle", "demo@2", "--", "./run.sh")
    assert done.returncode == 1 and "has no version 2" in done.stderr.decode()
    assert json.loads(grid.ok("jobs", "--json")) == []  # nothing refused was queued

    (src / "loop").symlink_to(src / "lib")
    done = grid.cli("bundle", "push", "demo", str(src))
    assert done.returncode == 2 and "link to a directory" in done.stderr.decode()

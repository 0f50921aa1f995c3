"""`gridd why` as a person and a script use it, on a real broker and real worker processes: a job that waits
because the only worker's owner is at the desk (a real idle probe) says so, per worker, then where and how
it ran once another worker took it; an unknown id is one line and exit 1."""

from __future__ import annotations

import sys
from typing import Any

from tests.e2e.conftest import Grid
from tests.polling import wait_until


def _desk_state(grid: Grid) -> Any:
    return next(w["state"] for w in grid.json("workers") if w["name"] == "desk")


def test_why_names_the_owner_busy_worker_then_where_the_job_ran(grid: Grid) -> None:
    grid.start_broker()
    busy = grid.root / "owner-busy"
    busy.touch()
    probe = f"{sys.executable} -c \"import os, sys; sys.exit(os.path.exists('{busy}'))\""
    grid.start_worker("desk", flags=["--idle-probe", probe, "--probe-every", "0.2"])
    grid.wait_worker_connected("desk")
    wait_until(lambda: _desk_state(grid) == "owner-busy", 15, "the desk to be owner-busy")
    job = grid.submit("true")

    text = grid.ok("why", job).splitlines()
    assert text[0] == f"job {job} (queued): queued: every worker that could run it is busy or taken back by its owner"
    assert "to run: it starts when one of these frees up: desk (its owner is using the machine (owner-busy))" in text
    assert text[text.index("WORKER  STATE       WHY NOT") + 1] == (
        "desk    owner-busy  its owner is using the machine (owner-busy)"
    )

    record = grid.json("why", job)
    assert record["job"]["id"] == job and record["job"]["command"] == "true"
    assert record["workers"] == [
        {"worker": "desk", "state": "owner-busy", "blocker": "its owner is using the machine (owner-busy)"}
    ]

    grid.start_worker("w2")
    grid.wait_state(job, "succeeded")
    text = grid.ok("why", job).splitlines()
    assert text[0] == f"job {job} (succeeded): succeeded with exit code 0 on w2"
    assert text[1].startswith("finished: ")
    header = next(i for i, line in enumerate(text) if line.startswith("ATTEMPT"))
    assert text[header + 1].split()[:4] == ["1", "w2", "exited", "0"]
    assert not any(line.startswith("WORKER") for line in text)  # a finished job lists no worker obstacles


def test_why_of_an_unknown_job_is_one_line_and_exit_1(grid: Grid) -> None:
    grid.start_broker()
    result = grid.cli("why", "999")
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode().splitlines() == ["gridd: no job has id '999'"]

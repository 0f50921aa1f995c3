"""Delayed jobs as a person and a script use them (`gridd submit --at/--in`), on a real broker and worker
processes: the job is `scheduled`, shown and counted so, not run before its time and run at it; `release`
runs it now; a time or duration that cannot be read is one line, exit 2, and nothing is created."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from tests.e2e.conftest import Grid


def test_submit_in_90m_is_scheduled_shown_and_counted_until_release_runs_it(grid: Grid) -> None:
    grid.start_broker()
    grid.start_worker("w1")
    before_ms = time.time() * 1000
    job = grid.submit("true", flags=["--in", "90m"])
    record = grid.show(job)
    assert record["state"] == "scheduled"
    assert before_ms + 90 * 60_000 <= record["start_at_ms"] <= time.time() * 1000 + 90 * 60_000
    assert grid.json("status")["counts"]["scheduled"] == 1
    assert "scheduled 1" in grid.ok("status")
    assert [j["id"] for j in grid.json("jobs", "--state", "scheduled")] == [job]
    shown = grid.ok("show", job).splitlines()
    assert any(line.split() == ["state", "scheduled"] for line in shown)
    assert any(line.startswith("start at ") and line.endswith(" (in 1h)") for line in shown), shown
    why = grid.ok("why", job).splitlines()
    assert why[0].startswith(f"job {job} (scheduled): scheduled to start at ")
    assert why[0].endswith((" UTC, in 1h29m", " UTC, in 1h30m")), why[0]  # rounded, a moment after submit
    assert f"to run: its start time coming, or gridd release {job} to run it now" in why

    group_ids = grid.ok("submit", "--array", "1-3", "--in", "1d", "--", "true").split()
    assert {grid.show(i)["state"] for i in group_ids} == {"scheduled"}

    assert grid.cli("release", job).returncode == 0
    assert grid.wait_state(job, "succeeded")["attempts"] == 1
    assert {grid.show(i)["state"] for i in group_ids} == {"scheduled"}  # theirs is a day away
    group = grid.show(group_ids[0])["group"]
    assert grid.cli("release", group).returncode == 0
    for i in group_ids:
        grid.wait_state(i, "succeeded")


def test_submit_at_a_local_time_runs_the_job_then_and_not_before(grid: Grid) -> None:
    grid.start_broker()
    grid.start_worker("w1")
    start = (datetime.now() + timedelta(seconds=3)).replace(microsecond=0)  # naive: this machine's local time
    job = grid.submit("true", flags=["--at", start.isoformat()])
    assert grid.show(job)["start_at_ms"] == int(start.timestamp() * 1000)
    record = grid.wait_state(job, "succeeded", timeout=30)
    assert record["started_ms"] >= record["start_at_ms"]


@pytest.mark.parametrize(
    "flags",
    [
        ["--at", "tomorrow"],
        ["--at", "2026-13-01T00:00"],
        ["--at", "2026-12-24T02:00", "--in", "5m"],
        ["--in", "soon"],
        ["--in", "never"],
    ],
)
def test_a_time_that_cannot_be_read_is_one_line_exit_2_and_creates_nothing(grid: Grid, flags: list[str]) -> None:
    grid.start_broker()
    result = grid.cli("submit", *flags, "--", "true")
    assert result.returncode == 2 and result.stdout == b""
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith("gridd: ") and ("--at" in line or "--in" in line), line
    assert grid.json("jobs") == []

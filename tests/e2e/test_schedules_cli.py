"""`gridd schedule` from the command line: add, list, show, pause, resume, remove against a real broker
(subprocesses), what a person reads and what a script reads (--json), and bad input: a cron expression or
time zone that cannot be used exits 2 with one line and creates nothing; an unknown or taken name exits 1.
(Slots firing are tested in-process with a fake clock, tests/broker/test_schedules.py: no test waits for
a real cron minute.)"""

from __future__ import annotations

import json

from tests.e2e.conftest import Grid


def test_schedules_from_the_command_line(grid: Grid) -> None:
    grid.start_broker()
    assert grid.ok("schedule", "list").strip() == "no schedules (gridd schedule add makes one)"

    out = grid.ok(
        "schedule",
        "add",
        "nightly",
        "--cron",
        "0 2 * * *",
        "--tz",
        "Europe/London",
        "--catch-up",
        "all",
        "--queue",
        "batch",
        "--priority",
        "5",
        "--env",
        "MODE=full",
        "--",
        "python3",
        "-c",
        "print('x')",
        "--not-a-gridd-flag",
    )
    assert out.startswith("schedule nightly added: next run ") and ("GMT" in out or "BST" in out)
    grid.ok("schedule", "add", "hourly", "--cron", "@hourly", "--", "true")

    (table_head, *rows) = grid.ok("schedule", "list").splitlines()
    assert table_head.split()[:3] == ["NAME", "CRON", "TZ"]
    assert [r.split()[0] for r in rows] == ["hourly", "nightly"]
    listed = {s["name"]: s for s in grid.json("schedule", "list")}
    nightly = listed["nightly"]
    assert (nightly["cron"], nightly["tz"], nightly["catch_up"], nightly["queue"]) == (
        "0 2 * * *",
        "Europe/London",
        "all",
        "batch",
    )
    assert nightly["argv"] == ["python3", "-c", "print('x')", "--not-a-gridd-flag"]  # all after -- is the command
    assert nightly["paused"] is False and nightly["last_fired_ms"] is None and nightly["owner"] == "admin"
    assert listed["hourly"]["cron"] == "@hourly" and listed["hourly"]["catch_up"] == "last"  # the defaults

    shown = grid.ok("schedule", "show", "nightly")
    assert "cron      0 2 * * *" in shown and "last run  -" in shown and "catch-up  all" in shown
    record = json.loads(grid.ok("schedule", "show", "nightly", "--json"))
    assert record["schedule"]["name"] == "nightly" and record["runs"] == []

    assert grid.ok("schedule", "pause", "nightly").strip() == "schedule nightly paused"
    assert grid.json("schedule", "show", "nightly")["schedule"]["paused"] is True
    assert "paused" in grid.ok("schedule", "list")
    assert grid.ok("schedule", "resume", "nightly").startswith("schedule nightly resumed: next run ")
    assert grid.json("schedule", "show", "nightly")["schedule"]["paused"] is False
    assert grid.ok("schedule", "remove", "hourly").strip() == "schedule hourly removed"
    assert [s["name"] for s in grid.json("schedule", "list")] == ["nightly"]


def test_bad_input_is_one_line_and_creates_nothing(grid: Grid) -> None:
    grid.start_broker()
    for args, says in [
        (["--cron", "61 * * * *"], "argument --cron: cron expression '61 * * * *': bad minute"),
        (["--cron", "0 2 * *"], "argument --cron: cron expression '0 2 * *': want 5 fields"),
        (["--cron", "@daily", "--tz", "Mars/Olympus"], "argument --tz: unknown time zone 'Mars/Olympus'"),
        (["--cron", "@daily", "--catch-up", "some"], "argument --catch-up: invalid choice: 'some'"),
        (["--cron", "@daily", "--cpus", "0"], "--cpus must be between 1 and"),
    ]:
        result = grid.cli("schedule", "add", "x", *args, "--", "true")
        lines = result.stderr.decode().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and says in lines[0], (args, result.stderr)
    result = grid.cli("schedule", "add", "x", "--cron", "@daily")
    assert result.returncode == 2 and "schedule add needs a command" in result.stderr.decode()
    result = grid.cli("schedule", "add", "bad/name", "--cron", "@daily", "--", "true")
    assert result.returncode == 2 and "a schedule's name is letters, digits" in result.stderr.decode()
    assert grid.json("schedule", "list") == []  # nothing was created

    grid.ok("schedule", "add", "x", "--cron", "@daily", "--", "true")
    taken = grid.cli("schedule", "add", "x", "--cron", "@hourly", "--", "false")
    assert taken.returncode == 1
    assert taken.stderr.decode() == "gridd: a schedule named 'x' exists already (gridd schedule remove x first)\n"
    for action in ("show", "pause", "resume", "remove"):
        unknown = grid.cli("schedule", action, "nope")
        assert unknown.returncode == 1, action
        assert unknown.stderr.decode() == "gridd: no schedule is named 'nope' (gridd schedule list shows them)\n"
    assert [s["cron"] for s in grid.json("schedule", "list")] == ["@daily"]

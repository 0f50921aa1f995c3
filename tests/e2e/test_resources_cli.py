"""Resources from the command line, with real `gridd` processes: workers show what they have, a job
asking for more than any connected worker has (or a tag none has) says so in `gridd show` until a worker
that can run it connects, and malformed resource flags are usage errors."""

from __future__ import annotations

import platform

from tests.e2e.conftest import Grid


def test_a_job_waits_visibly_for_a_worker_with_its_tag_and_size_then_runs_there(grid: Grid) -> None:
    grid.start_broker()
    grid.start_worker("small", flags=["--cpus", "1", "--memory", "512M"])
    grid.wait_worker_connected("small")
    (small,) = grid.json("workers")
    assert (small["cpus"], small["memory_mb"]) == (1, 512)
    assert small["tags"] == {"os": platform.system().lower(), "arch": platform.machine()}
    header, row = grid.ok("workers").splitlines()[:2]
    assert header.split()[5:7] == ["CPUS", "MEMORY"] and row.split()[5:7] == ["1", "512M"]

    job = grid.submit("true", flags=["--cpus", "2", "--memory", "1G", "--require", "gpu=1"])
    shown = grid.show(job)
    assert (shown["state"], shown["cpus"], shown["memory_mb"], shown["requires"]) == ("queued", 2, 1024, {"gpu": "1"})
    why = "no connected worker can run it: no worker serving queue 'default' has the tag gpu=1"
    assert shown["unmatched"] == why
    assert [line.split(None, 1)[1] for line in grid.ok("show", job).splitlines() if line.startswith("unmatched")] == [
        why
    ]

    grid.start_worker("gpu", flags=["--cpus", "2", "--memory", "2G", "--tag", "gpu=1"])
    done = grid.wait_state(job, "succeeded")
    assert done["worker"] == "gpu" and done["unmatched"] is None
    # --array jobs take the same flags; a lane the gpu worker has not seen while it waits still reaches it.
    ids = grid.ok(
        "submit", "--array", "1-3", "--require", "gpu=1", "--require", "os=" + platform.system().lower(), "--", "true"
    ).split()
    assert {grid.wait_state(j, "succeeded")["worker"] for j in ids} == {"gpu"}


def test_malformed_resource_flags_are_usage_errors(grid: Grid) -> None:
    grid.start_broker()
    for argv in (
        ["submit", "--cpus", "0", "--", "true"],
        ["submit", "--cpus", "5000", "--", "true"],
        ["submit", "--memory", "lots", "--", "true"],
        ["submit", "--require", "nokey", "--", "true"],
        ["submit", "--require", "a;b=c", "--", "true"],
        ["worker", "--cpus", "0"],
        ["worker", "--memory", "lots"],
    ):
        result = grid.cli(*argv, timeout=30)
        assert result.returncode == 2, (argv, result.stderr)
        lines = result.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gridd: "), (argv, lines)

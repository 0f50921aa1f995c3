"""One data dir, one broker: a second `gridd broker` on it stops at once and names the first one."""

from __future__ import annotations

from tests.e2e.conftest import Grid


def test_a_second_broker_on_the_same_data_dir_exits_1_naming_the_first(grid: Grid) -> None:
    grid.start_broker()
    first = grid.broker
    addr_before = (grid.data_dir / "broker.addr").read_text()
    second = grid.run_broker()
    lines = second.stderr.decode().strip().splitlines()
    assert second.returncode == 1, second.stderr
    assert len(lines) == 1 and f"pid {first.pid}" in lines[0] and "data dir" in lines[0], lines
    # The first one still owns the grid: its address stands and it takes submits.
    assert (grid.data_dir / "broker.addr").read_text() == addr_before
    job = grid.submit("true")
    assert grid.show(job)["state"] in ("queued", "running", "succeeded")
    assert first.poll() is None


def test_a_broker_restarted_on_its_data_dir_after_the_first_stopped_starts(grid: Grid) -> None:
    """The lock goes with the process (here SIGKILL): nothing stale blocks the next broker."""
    grid.start_broker()
    grid.broker.kill()
    grid.broker.wait(timeout=10)
    grid.start_broker()
    grid.submit("true")

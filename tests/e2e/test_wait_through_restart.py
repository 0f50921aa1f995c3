"""A person waiting on the grid rides through a broker restart, as the workers do."""

from __future__ import annotations

import subprocess

from tests.e2e.conftest import GRIDD, Grid
from tests.polling import wait_until


def test_wait_and_submit_wait_outlast_a_broker_restart_and_report_the_real_outcome(grid: Grid) -> None:
    grid.start_broker(lease_ttl=10, log_level="debug")  # debug: it logs each peer's handshake
    port = grid.port
    grid.start_worker("A", slots=2)
    gate = grid.root / "gate"
    script = f"echo begun; while [ ! -e {gate} ]; do sleep 0.05; done; echo over; exit 3"
    waited_job = grid.submit("sh", "-c", script)
    grid.wait_state(waited_job, "running")
    addr = grid.addr or ""  # the restarted broker listens on the same port
    waiter = grid.spawn([*GRIDD, "wait", "--broker", addr, waited_job], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    submitter = grid.spawn(
        [*GRIDD, "submit", "--broker", addr, "--wait", "--", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_until(lambda: len(grid.json("jobs", "--state", "running")) == 2, 20, "both jobs to run")
    # A client that cannot connect at all exits 3 at once (another test's business): this one is about
    # riding through a restart once connected.
    connected = f"name=client-{waiter.pid}"
    wait_until(lambda: connected in grid.log_text(), 20, "gridd wait to connect")

    grid.broker.terminate()
    assert grid.broker.wait(timeout=10) == 0
    grid.start_broker(port=port, lease_ttl=10)  # the workers re-attach; so must the waiting clients
    gate.touch()

    _, waiter_err = waiter.communicate(timeout=60)
    out, err = submitter.communicate(timeout=60)
    assert waiter.returncode == 1, waiter_err  # the job failed (exit 3): wait says so, not "connection lost"
    assert f"job {waited_job} failed, exit code 3" in waiter_err.decode()
    assert submitter.returncode == 3, err  # the job's own status, as if run here
    assert out == b"begun\nover\n"  # all of it, once, across the restart
    assert b"waiting for the broker to come back" in err


def test_events_go_on_after_a_broker_restart(grid: Grid) -> None:
    grid.start_broker(log_level="debug")
    port = grid.port
    addr = grid.addr or ""
    out_path = grid.root / "events.out"
    with out_path.open("wb") as out:
        follower = grid.spawn(
            [*GRIDD, "events", "--broker", addr, "--kind", "job.submitted"], stdout=out, stderr=subprocess.PIPE
        )
        wait_until(lambda: f"name=client-{follower.pid}" in grid.log_text(), 20, "gridd events to connect")
        before = grid.submit("true")
        wait_until(lambda: before in out_path.read_text(), 20, "the first event")

        grid.broker.terminate()
        assert grid.broker.wait(timeout=10) == 0
        grid.start_broker(port=port, log_level="debug")
        # Submitted once `events` is back (it says so in the broker's log when it connects again).
        wait_until(lambda: grid.log_text().count(f"name=client-{follower.pid}") >= 2, 30, "gridd events to come back")
        after = grid.submit("true")
        wait_until(lambda: after in out_path.read_text(), 20, "the event after the restart")
        assert follower.poll() is None  # still following
        follower.terminate()
        _, err = follower.communicate(timeout=10)
    assert b"waiting for the broker to come back" in err

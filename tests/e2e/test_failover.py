"""`--broker A,B`: workers and clients use the first broker that answers, and when it dies they move to the
next. Here broker A is `kill -9`ed and broker B takes over its data dir on another port (its lock allows it
once A is dead): the worker moves to B, its running job re-attaches there and finishes, and the clients
waiting on it (`submit --wait`, `wait`) go on through the move and print the real outcome."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import JOBS_AS_WORKER
from tests.e2e.conftest import GRIDD, Grid
from tests.pgserver import free_port
from tests.polling import wait_until


def test_a_worker_and_waiting_clients_move_to_the_next_broker_when_theirs_is_killed(grid: Grid) -> None:
    a = grid.start_broker(lease_ttl=10, log_level="debug")  # debug: it logs each peer's handshake
    b_port = free_port()
    both = f"{a},127.0.0.1:{b_port}"
    worker = grid.start_worker("W", slots=2, flags=["--broker", both])
    grid.wait_worker_connected("W")
    gate = grid.root / "gate"
    script = f"echo begun; while [ ! -e {gate} ]; do sleep 0.05; done; echo over; exit 3"
    once = ["--max-attempts", "1"]  # a job run again (not re-attached) would end without exit code 3
    waited_job = grid.submit("sh", "-c", script, flags=once)
    waiter = grid.spawn([*GRIDD, "wait", "--broker", both, waited_job], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    submitter = grid.spawn(
        [*GRIDD, "submit", "--broker", both, "--wait", *once, "--", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_until(lambda: len(grid.json("jobs", "--state", "running")) == 2, 20, "both jobs to run")
    for client in (waiter, submitter):
        wait_until(lambda: f"name=client-{client.pid}" in grid.log_text(), 20, "the clients to connect")  # noqa: B023

    grid.broker.kill()
    grid.broker.wait(timeout=10)
    b = grid.start_broker(port=b_port, lease_ttl=10)  # the same data dir, another port
    assert b != a
    wait_until(lambda: "worker.broker_moved" in grid.worker_log("W").read_text(), 20, "the worker to move to B")
    moved = next(line for line in grid.worker_log("W").read_text().splitlines() if "worker.broker_moved" in line)
    assert f"from={a}" in moved and f"to={b}" in moved
    gate.touch()

    _, waiter_err = waiter.communicate(timeout=60)
    out, err = submitter.communicate(timeout=60)
    assert waiter.returncode == 1, waiter_err  # the job's real end: it failed with exit code 3
    assert f"job {waited_job} failed, exit code 3" in waiter_err.decode()
    assert submitter.returncode == 3, err  # the job's own status, as if run here
    assert out == b"begun\nover\n"  # all of it, once, across the move
    record = grid.show(waited_job)
    assert (record["attempts"], record["worker"]) == (1, "W")  # re-attached on B, not run again
    assert worker.poll() is None


def test_the_first_broker_that_answers_is_used_when_the_first_is_down(grid: Grid) -> None:
    b = grid.start_broker()
    both = f"127.0.0.1:{free_port()},{b}"
    grid.start_worker("W", flags=["--broker", both])
    job = grid.ok("submit", "--", "echo", "via B").strip()
    status = grid.cli("status", "--json", broker=both)
    assert status.returncode == 0, status.stderr
    wait = grid.cli("wait", job, broker=both)
    assert wait.returncode == 0, wait.stderr
    assert grid.cli("logs", job, broker=both).stdout == b"via B\n"


@pytest.mark.parametrize(
    "command", [["status"], ["submit", "--wait", "--", "true"], ["events"], ["tui"], ["web", "--listen", "127.0.0.1:0"]]
)
def test_a_malformed_entry_is_a_usage_error_naming_it(grid: Grid, command: list[str]) -> None:
    result = grid.cli(*command, broker="127.0.0.1:7420,[::1]:7420,nonsense")
    assert result.returncode == 2, result.stderr
    assert result.stderr.decode().splitlines() == [
        "gridd: broker address 'nonsense' (in '127.0.0.1:7420,[::1]:7420,nonsense') is not HOST:PORT"
    ]


def test_a_worker_given_a_malformed_entry_stops_at_once_with_a_usage_error(grid: Grid) -> None:
    env = dict(grid.env, GRIDD_BROKER="127.0.0.1:7420,broker-b")
    work = ["--work-dir", str(grid.root / "work")]
    result = grid.cli("worker", "--name", "w", *work, *JOBS_AS_WORKER, "--log-format", "logfmt", env=env)
    assert result.returncode == 2, result.stderr
    assert b"gridd: broker address 'broker-b' (in '127.0.0.1:7420,broker-b') is not HOST:PORT" in result.stderr

"""The guarantees of DESIGN.md, proved with real processes: kill -9, SIGSTOP, SIGTERM and garbage on the wire."""

from __future__ import annotations

import collections
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap

from tests.e2e.conftest import TOKEN, Grid, clean_env
from tests.polling import wait_until


def _job_script(grid: Grid, body: str) -> list[str]:
    """`sh -c` that first records its pid (so the grid can kill what a dead worker left behind)."""
    return ["sh", "-c", f"echo $$ >> {shlex.quote(str(grid.job_pids))}; {body}"]


def _lines(path: os.PathLike[str]) -> list[str]:
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def _alive(pid: int) -> bool:
    """Running (a zombie, whose parent has not reaped it yet, counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


# ---- 1. worker killed with kill -9 --------------------------------------------------------------------------


def test_job_of_a_worker_killed_with_sigkill_runs_again_on_another_worker_and_succeeds(grid: Grid) -> None:
    grid.start_broker(lease_ttl=2)
    worker_a = grid.start_worker("A")
    marks = grid.root / "marks"
    body = f'echo "$GRIDD_ATTEMPT $GRIDD_WORKER" >> {marks}; if [ "$GRIDD_ATTEMPT" = 1 ]; then sleep 30; fi; echo done'
    job = grid.submit(*_job_script(grid, body))

    running = grid.wait_state(job, "running")
    assert running["worker"] == "A"
    wait_until(lambda: _lines(marks) == ["1 A"], 10, "attempt 1 to start on A")
    worker_a.kill()
    worker_a.wait(timeout=10)
    grid.start_worker("B")

    final = grid.wait_state(job, ("succeeded", "failed", "cancelled"), timeout=30)
    assert final["state"] == "succeeded", final
    assert final["attempts"] == 2
    assert final["worker"] == "B"
    assert final["exit_code"] == 0
    assert _lines(marks) == ["1 A", "2 B"]
    assert grid.ok("logs", job) == "done\n"


# ---- 2. broker killed with kill -9 during a stream of submits -----------------------------------------------

SUBMITTER = textwrap.dedent(
    """
    import sys, anyio
    from gridd.client import connect

    async def main(addr, token, ran):
        async with connect(addr, token) as client:
            for _ in range(20000):
                job_id = await client.submit(["sh", "-c", 'echo "$GRIDD_JOB_ID" >> ' + ran])
                print(job_id, flush=True)

    try:
        anyio.run(main, *sys.argv[1:])
    except BaseException as exc:  # the broker was killed under us: say so, and stop
        print("submitter stopped:", type(exc).__name__, file=sys.stderr, flush=True)
        sys.exit(9)
    """
)


def test_every_acknowledged_submit_survives_a_broker_sigkill_and_runs_exactly_once(grid: Grid) -> None:
    addr = grid.start_broker(lease_ttl=3)
    port = grid.port
    grid.start_worker("W", slots=2)
    ran = grid.root / "ran"
    acked = grid.root / "acked"
    with acked.open("wb") as out:
        submitter = grid.spawn(
            [sys.executable, "-c", SUBMITTER, addr, TOKEN, shlex.quote(str(ran))],
            stdout=out,
            stderr=subprocess.PIPE,
        )
        wait_until(lambda: len(_lines(acked)) >= 150, 30, "150 acknowledged submits")
        grid.broker.kill()  # mid-stream: the submitter is still submitting
        grid.broker.wait(timeout=10)
        _, err = submitter.communicate(timeout=20)
    assert submitter.returncode == 9, f"the submitter should have been cut off mid-stream: {err!r}"
    text = acked.read_text()
    acknowledged = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]
    assert len(acknowledged) >= 150 and len(set(acknowledged)) == len(acknowledged)

    grid.start_broker(port=port, lease_ttl=3)
    try:
        waited = grid.cli("wait", *acknowledged, timeout=40)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"acknowledged jobs did not all finish within 40 s after the restart: {grid.json('status')}"
        ) from None
    assert waited.returncode == 0, waited.stderr.decode(errors="replace")

    states = {j["id"]: j for j in grid.json("jobs", "--limit", "0")}
    missing = [i for i in acknowledged if i not in states]
    assert not missing, f"acknowledged but lost after kill -9: {missing}"
    not_ok = {i: states[i]["state"] for i in acknowledged if states[i]["state"] != "succeeded"}
    assert not not_ok
    runs = collections.Counter(_lines(ran))
    assert all(runs[i] == 1 for i in acknowledged), {i: runs[i] for i in acknowledged if runs[i] != 1}
    assert all(states[i]["attempts"] == 1 for i in acknowledged)


# ---- 3. a stopped worker's late completion is refused ------------------------------------------------------


def test_late_result_of_a_worker_stopped_past_its_lease_is_refused_and_the_outcome_stays(grid: Grid) -> None:
    grid.start_broker(lease_ttl=2)
    worker_a = grid.start_worker("A")
    body = 'if [ "$GRIDD_ATTEMPT" = 1 ]; then sleep 3; echo from-attempt-one; exit 5; fi; echo from-attempt-two'
    job = grid.submit(*_job_script(grid, body), flags=["--max-attempts", "3"])
    assert grid.wait_state(job, "running")["worker"] == "A"

    worker_a.send_signal(signal.SIGSTOP)  # alive but silent: its heartbeats stop, its lease runs out
    try:
        grid.start_worker("B")
        final = grid.wait_state(job, ("succeeded", "failed"), timeout=30)
        assert (final["state"], final["worker"], final["attempts"], final["exit_code"]) == ("succeeded", "B", 2, 0)
        # Attempt one's process ends (exit 5) while A is still stopped; A then wakes up holding its result.
        pid = int(_lines(grid.job_pids)[0])
        wait_until(lambda: not _alive(pid), 10, "attempt one's process to end")
    finally:
        worker_a.send_signal(signal.SIGCONT)

    def refused() -> bool:
        # Either A delivers its result and the broker refuses it (fencing token), or A learns first that
        # its lease is gone and drops it; both must leave the recorded outcome alone.
        stale = "lease.stale_completion" in grid.log_text() and f"job_id={job}" in grid.log_text()
        return stale or f"event=job.stopped job_id={job}" in grid.worker_log("A").read_text()

    wait_until(refused, 15, "worker A's late result to be refused or dropped")
    # A's connection is still serving (it was only stopped): give it a heartbeat's time, then the outcome.
    wait_until(lambda: grid.json("workers") and all(w["running"] == 0 for w in grid.json("workers")), 10, "idle")
    after = grid.show(job)
    assert (after["state"], after["worker"], after["attempts"], after["exit_code"]) == ("succeeded", "B", 2, 0)
    assert grid.ok("logs", job) == "from-attempt-two\n"


# ---- 4. worker SIGTERM --------------------------------------------------------------------------------------


def test_sigterm_hands_a_job_longer_than_the_grace_back_without_spending_an_attempt(grid: Grid) -> None:
    grid.start_broker(lease_ttl=3)
    worker_a = grid.start_worker("A", grace=1)
    body = 'if [ "$GRIDD_WORKER" = A ]; then sleep 30; fi; echo "attempt=$GRIDD_ATTEMPT"'
    job = grid.submit(*_job_script(grid, body))
    running = grid.wait_state(job, "running")
    assert (running["worker"], running["attempts"]) == ("A", 1)

    worker_a.terminate()
    assert worker_a.wait(timeout=8) == 0
    back = grid.show(job)
    assert back["state"] == "queued", back
    assert back["attempts"] == 0, f"a handed-back job must not spend an attempt: {back}"
    pid = int(_lines(grid.job_pids)[0])
    wait_until(lambda: not _alive(pid), 5, "the handed-back job's process to be ended")

    grid.start_worker("B")
    final = grid.wait_state(job, ("succeeded", "failed"), timeout=20)
    assert (final["state"], final["worker"], final["attempts"]) == ("succeeded", "B", 1)
    assert grid.ok("logs", job) == "attempt=1\n"


def test_sigterm_lets_a_job_shorter_than_the_grace_finish_and_records_it_before_exiting(grid: Grid) -> None:
    grid.start_broker(lease_ttl=3)
    worker_a = grid.start_worker("A", grace=10)
    job = grid.submit(*_job_script(grid, "sleep 1.5; echo finished"))
    grid.wait_state(job, "running")

    worker_a.terminate()
    assert worker_a.wait(timeout=10) == 0, "the worker must exit once its job is done and delivered"
    done = grid.show(job)  # recorded before the worker exited: no need to wait
    assert (done["state"], done["worker"], done["attempts"], done["exit_code"]) == ("succeeded", "A", 1, 0)
    assert grid.ok("logs", job) == "finished\n"


def test_a_worker_that_has_run_a_job_exits_promptly_on_sigterm(grid: Grid) -> None:
    grid.start_broker()
    worker = grid.start_worker("A", grace=10)
    waited = grid.cli("submit", "--wait", "--", "true")
    assert waited.returncode == 0
    worker.terminate()
    try:
        worker.wait(timeout=5)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            "an idle worker did not exit within 5 s of SIGTERM:\n" + grid.worker_log("A").read_text()
        ) from None
    assert worker.returncode == 0


# ---- 5. broker SIGTERM --------------------------------------------------------------------------------------


def test_broker_sigterm_exits_0_and_a_running_job_is_recorded_once_after_restart(grid: Grid) -> None:
    grid.start_broker(lease_ttl=3)
    port = grid.port
    grid.start_worker("A")
    marks = grid.root / "marks"
    job = grid.submit(*_job_script(grid, f"echo run >> {marks}; sleep 3; echo done"))
    grid.wait_state(job, "running")
    wait_until(lambda: _lines(marks), 10, "the job to start")

    grid.broker.terminate()
    assert grid.broker.wait(timeout=8) == 0
    pid = int(_lines(grid.job_pids)[0])
    assert _alive(pid), "the job must keep running while the broker is away"

    grid.start_broker(port=port, lease_ttl=3)
    final = grid.wait_state(job, ("succeeded", "failed"), timeout=30)
    assert (final["state"], final["attempts"], final["worker"], final["exit_code"]) == ("succeeded", 1, "A", 0)
    assert _lines(marks) == ["run"]
    assert grid.ok("logs", job) == "done\n"


def test_a_job_that_ends_while_the_broker_is_down_is_recorded_once_after_restart(grid: Grid) -> None:
    """The worker keeps the result and delivers it when the broker is back within one lease TTL."""
    grid.start_broker(lease_ttl=10)
    port = grid.port
    grid.start_worker("A")
    marks = grid.root / "marks"
    job = grid.submit(*_job_script(grid, f"echo run >> {marks}; sleep 1; echo done"))
    grid.wait_state(job, "running")
    grid.broker.kill()
    grid.broker.wait(timeout=10)
    pid = int(wait_until(lambda: _lines(grid.job_pids), 10, "the job's pid")[0])
    wait_until(lambda: not _alive(pid), 10, "the job to end while the broker is down")

    grid.start_broker(port=port, lease_ttl=10)
    final = grid.wait_state(job, ("succeeded", "failed"), timeout=30)
    assert _lines(marks) == ["run"], "the job ran again although its worker kept its result"
    assert (final["state"], final["attempts"], final["worker"], final["exit_code"]) == ("succeeded", 1, "A", 0)


# ---- 6. garbage on the wire, and a wrong token --------------------------------------------------------------


def _send_raw(addr: str, payload: bytes) -> bytes:
    """Send bytes on a fresh TCP connection; return what the broker answered before closing (bounded)."""
    host, _, port = addr.rpartition(":")
    received = b""
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.settimeout(5)
        try:
            sock.sendall(payload)
            for _ in range(1000):
                chunk = sock.recv(65536)
                if not chunk:
                    return received
                received += chunk
        except ConnectionResetError:
            return received
        except TimeoutError:
            raise AssertionError(f"the broker kept a connection open after garbage {payload[:16]!r}") from None
    raise AssertionError("the broker kept talking")


def test_garbage_and_oversized_frames_close_that_connection_and_the_broker_keeps_serving(grid: Grid) -> None:
    addr = grid.start_broker()
    grid.start_worker("W")
    for payload in (
        b"\xff\xff\xff\xff" + b"x" * 64,  # a length prefix far over the 16 MiB limit
        b"\x00\x00\x00\x05hello",  # a frame whose body is not msgpack
        b"\x00\x00\x00\x02\x93\x01",  # msgpack, but not a message
        os.urandom(512),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        _send_raw(addr, payload)
        status = grid.cli("status", "--json")
        assert status.returncode == 0, status.stderr
    assert grid.cli("submit", "--wait", "--", "echo", "still-serving").stdout == b"still-serving\n"
    assert grid.broker.poll() is None


def test_wrong_token_exits_3_with_one_line_and_cannot_submit(grid: Grid) -> None:
    grid.start_broker()
    wrong = clean_env(grid.root, token="not-the-secret")
    status = grid.cli("status", env=wrong)
    assert status.returncode == 3
    assert len(status.stderr.decode().strip().splitlines()) == 1, status.stderr
    submit = grid.cli("submit", "--", "touch", str(grid.root / "pwned"), env=wrong)
    assert submit.returncode == 3 and submit.stdout == b""
    assert grid.json("jobs") == []
    assert grid.cli("status").returncode == 0  # the broker keeps serving

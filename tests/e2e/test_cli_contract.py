"""The public contract of DESIGN.md, command by command, through the `gridd` executable.

One broker and one 3-slot worker serve the whole module; tests that need a queue of their own use a queue
no other test uses. Every CLI run asserts that stderr holds no traceback (see Grid.cli).
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import GRIDD, Grid, stop_all
from tests.polling import wait_until


@pytest.fixture(scope="module")
def g(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    grid = Grid(tmp_path_factory.mktemp("contract"))
    try:
        grid.start_broker(lease_ttl=5)
        grid.start_worker("w1", slots=3)
        grid.wait_worker_connected("w1")
        yield grid
    finally:
        grid.close()


def one_line(stderr: bytes) -> str:
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, f"want one line on stderr, got {lines}"
    return lines[0]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


# ---- submit -------------------------------------------------------------------------------------------------


def test_submit_prints_only_the_job_id_and_the_job_runs(g: Grid) -> None:
    result = g.cli("submit", "--", "true")
    assert result.returncode == 0
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 1 and lines[0] and " " not in lines[0]
    assert g.wait_state(lines[0], "succeeded")["id"] == lines[0]


@pytest.mark.parametrize(
    ("command", "flags", "status"),
    [
        (["sh", "-c", "echo out; echo err >&2"], [], 0),
        (["sh", "-c", "echo out; echo err >&2; exit 7"], ["--max-attempts", "1"], 7),
        (["sleep", "10"], ["--timeout", "1", "--max-attempts", "1"], 124),
        (["gridd-e2e-no-such-command"], ["--max-attempts", "1"], 127),
        (["sh", "-c", "kill -9 $$"], ["--max-attempts", "1"], 137),
    ],
    ids=["exit-0", "exit-7", "timeout-124", "not-found-127", "sigkill-137"],
)
def test_submit_wait_exits_with_the_jobs_status_shell_style(
    g: Grid, command: list[str], flags: list[str], status: int
) -> None:
    result = g.cli("submit", "--wait", *flags, "--", *command)
    assert result.returncode == status, result.stderr
    if command[0] == "sh" and status in (0, 7):
        assert result.stdout == b"out\n"
        err = result.stderr.decode().splitlines()
        assert err[0].strip() and err[1:] == ["err"], err  # the id first, then the job's stderr


def test_submit_wait_exits_126_when_the_command_is_not_executable(g: Grid) -> None:
    script = g.root / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result = g.cli("submit", "--wait", "--max-attempts", "1", "--", str(script))
    assert result.returncode == 126, result.stderr


def test_submit_stdin_sends_standard_input_to_the_job(g: Grid) -> None:
    result = g.cli("submit", "--stdin", "--wait", "--", "cat", input=b"hello\n")
    assert (result.returncode, result.stdout) == (0, b"hello\n")


def test_job_standard_input_is_empty_without_stdin_flag(g: Grid) -> None:
    result = g.cli("submit", "--wait", "--", "sh", "-c", "wc -c", input=b"not for the job\n")
    assert result.returncode == 0 and result.stdout.strip() == b"0"


def test_env_flag_and_gridd_variables_reach_the_job(g: Grid) -> None:
    script = 'echo "$GREETING|$EMPTY|$GRIDD_JOB_ID|$GRIDD_ATTEMPT|$GRIDD_WORKER"'
    result = g.cli("submit", "--wait", "--env", "GREETING=hi there", "--env", "EMPTY=", "--", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    job_id = result.stderr.decode().splitlines()[0].strip()
    assert result.stdout.decode() == f"hi there||{job_id}|1|w1\n"


def test_each_job_runs_in_a_fresh_empty_working_directory_of_its_own(g: Grid) -> None:
    script = "ls -A; pwd; touch left-behind"
    first = g.cli("submit", "--wait", "--", "sh", "-c", script)
    second = g.cli("submit", "--wait", "--", "sh", "-c", script)
    assert first.returncode == second.returncode == 0
    (dir1,) = first.stdout.decode().splitlines()  # `ls -A` printed nothing
    (dir2,) = second.stdout.decode().splitlines()
    assert dir1 != dir2


# ---- inspection ---------------------------------------------------------------------------------------------


def test_show_json_has_the_documented_fields(g: Grid) -> None:
    job = g.submit("sh", "-c", "exit 0", flags=["--priority", "5"])
    record = g.wait_state(job, "succeeded")
    for field in ("id", "state", "exit_code", "attempts", "worker", "queue", "priority"):
        assert field in record, field
    assert (record["id"], record["exit_code"], record["attempts"], record["worker"]) == (job, 0, 1, "w1")
    assert (record["queue"], record["priority"]) == ("default", 5)
    queued = g.show(g.submit("true", flags=["--queue", "q-show"]))
    assert (queued["state"], queued["exit_code"], queued["worker"], queued["queue"]) == ("queued", None, None, "q-show")
    assert g.ok("cancel", queued["id"]) == ""
    plain = g.ok("show", job)
    assert job in plain and "succeeded" in plain


def test_jobs_lists_newest_first_and_honours_limit_and_state(g: Grid) -> None:
    ids = [g.submit("true", flags=["--queue", "q-jobs"]) for _ in range(3)]
    listed = g.json("jobs", "--limit", "3")
    assert isinstance(listed, list) and [j["id"] for j in listed] == ids[::-1]
    assert [j["id"] for j in g.json("jobs", "--limit", "2")] == ids[:0:-1]
    queued = {j["id"] for j in g.json("jobs", "--state", "queued", "--limit", "0")}
    assert set(ids) <= queued
    assert all(j["state"] == "succeeded" for j in g.json("jobs", "--state", "succeeded"))
    assert len(g.json("jobs", "--limit", "0")) >= len(g.json("jobs", "--limit", "3")) >= 3
    assert g.cli("cancel", *ids).returncode == 0
    assert all(g.show(i)["state"] == "cancelled" for i in ids)


def test_workers_and_status_json_describe_the_grid(g: Grid) -> None:
    workers = g.json("workers")
    (w1,) = [w for w in workers if w["name"] == "w1"]
    assert w1["slots"] == 3 and isinstance(w1["running"], int)
    g.wait_state(g.submit("true"), "succeeded")
    status = g.json("status")
    assert status["workers"] >= 1
    assert status["counts"]["succeeded"] >= 1  # counted once it finished (other tests' jobs may be too)
    assert "w1" in g.ok("workers")
    assert g.ok("status").strip()


def test_logs_writes_binary_stdout_byte_for_byte_and_stderr_on_request(g: Grid) -> None:
    script = "head -c 100000 /dev/urandom | tee data; sha256sum data >&2"
    job = g.submit("sh", "-c", script)
    g.wait_state(job, "succeeded")
    out = g.cli("logs", job)
    assert out.returncode == 0 and len(out.stdout) == 100000
    err = g.cli("logs", job, "--stderr")
    assert err.stdout.decode().split()[0] == hashlib.sha256(out.stdout).hexdigest()


def test_wait_exits_0_when_all_succeeded_and_1_when_one_did_not(g: Grid) -> None:
    good = [g.submit("true") for _ in range(2)]
    bad = g.submit("sh", "-c", "exit 4", flags=["--max-attempts", "1"])
    assert g.cli("wait", *good).returncode == 0
    result = g.cli("wait", *good, bad)
    assert result.returncode == 1
    assert bad in one_line(result.stderr)


# ---- state changes ------------------------------------------------------------------------------------------


def test_transitions_that_make_no_sense_exit_1_with_one_line(g: Grid) -> None:
    done = g.submit("true")
    g.wait_state(done, "succeeded")
    for command in ("cancel", "hold", "release", "retry"):
        result = g.cli(command, done)
        assert result.returncode == 1, command
        one_line(result.stderr)
    assert g.show(done)["state"] == "succeeded"


def test_hold_keeps_a_queued_job_back_and_release_queues_it_again(g: Grid) -> None:
    job = g.submit("true", flags=["--queue", "q-hold"])
    assert g.cli("hold", job).returncode == 0
    assert g.show(job)["state"] == "held"
    assert job in {j["id"] for j in g.json("jobs", "--state", "held")}
    assert g.cli("release", job).returncode == 0
    assert g.show(job)["state"] == "queued"
    second = g.cli("release", job)
    assert second.returncode == 1
    one_line(second.stderr)
    worker = g.start_worker("w-hold", queues=["q-hold"])
    try:
        assert g.wait_state(job, "succeeded")["worker"] == "w-hold"
    finally:
        stop_all([worker])


def test_cancel_of_a_running_job_ends_its_processes_within_seconds(g: Grid) -> None:
    pids = g.root / "cancel-pids"
    job = g.submit("sh", "-c", f"echo $$ > {pids}; sleep 30")
    g.wait_state(job, "running")
    pid = int(wait_until(lambda: pids.exists() and pids.read_text().strip(), 10, "the job's pid"))
    assert g.cli("cancel", job).returncode == 0
    assert g.wait_state(job, "cancelled", timeout=5)["state"] == "cancelled"
    wait_until(lambda: not _alive(pid), 5, "the cancelled job's process to end")
    again = g.cli("cancel", job)
    assert again.returncode == 1
    one_line(again.stderr)


def test_retry_queues_a_failed_job_again_under_the_same_id(g: Grid) -> None:
    flag = g.root / "retry-flag"
    job = g.submit("sh", "-c", f"test -e {flag}", flags=["--max-attempts", "1"])
    assert g.wait_state(job, ("failed", "succeeded"))["state"] == "failed"
    flag.touch()
    assert g.cli("retry", job).returncode == 0
    assert g.wait_state(job, ("succeeded", "failed"))["state"] == "succeeded"


def test_submit_wait_exits_125_when_the_job_is_cancelled(g: Grid) -> None:
    waiter = subprocess.Popen(
        [*GRIDD, "submit", "--broker", str(g.addr), "--wait", "--queue", "q-cancel-wait", "--", "true"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=g.env,
    )
    try:
        job = wait_until(
            lambda: [j["id"] for j in g.json("jobs", "--state", "queued") if j["queue"] == "q-cancel-wait"],
            10,
            "the submitted job",
        )[0]
        assert g.cli("cancel", job).returncode == 0
        _, err = waiter.communicate(timeout=15)
    finally:
        stop_all([waiter])
    assert waiter.returncode == 125
    assert b"Traceback" not in err


# ---- scheduling and attempts --------------------------------------------------------------------------------


def test_higher_priority_runs_first_and_equal_priorities_in_submission_order(g: Grid) -> None:
    order = g.root / "priority-order"
    flags = ["--queue", "q-prio"]
    jobs = [
        g.submit("sh", "-c", f"echo {name} >> {order}", flags=[*flags, "--priority", prio])
        for name, prio in (("low", "-5"), ("mid-a", "0"), ("mid-b", "0"), ("high", "10"))
    ]
    worker = g.start_worker("w-prio", slots=1, queues=["q-prio"])
    try:
        assert g.cli("wait", *jobs, timeout=30).returncode == 0
    finally:
        stop_all([worker])
    assert order.read_text().split() == ["high", "mid-a", "mid-b", "low"]


def test_max_attempts_1_fails_after_one_attempt_keeping_its_exit_code(g: Grid) -> None:
    job = g.submit("sh", "-c", "exit 3", flags=["--max-attempts", "1"])
    final = g.wait_state(job, ("failed", "succeeded"))
    assert (final["state"], final["exit_code"], final["attempts"]) == ("failed", 3, 1)


def test_a_failing_job_is_run_again_until_it_succeeds(g: Grid) -> None:
    job = g.submit("sh", "-c", 'echo "$GRIDD_ATTEMPT"; test "$GRIDD_ATTEMPT" -ge 3')
    final = g.wait_state(job, ("succeeded", "failed"), timeout=30)
    assert (final["state"], final["attempts"], final["exit_code"]) == ("succeeded", 3, 0)
    assert g.ok("logs", job) == "3\n"


def test_a_worker_runs_at_most_slots_jobs_at_once(g: Grid) -> None:
    log = g.root / "slots-log"
    script = f"echo start >> {log}; sleep 0.5; echo end >> {log}"
    jobs = [g.submit("sh", "-c", script, flags=["--queue", "q-slots"]) for _ in range(4)]
    worker = g.start_worker("w-slots", slots=2, queues=["q-slots"])
    try:
        assert g.cli("wait", *jobs, timeout=30).returncode == 0
    finally:
        stop_all([worker])
    running = peak = 0
    for line in log.read_text().split():
        running += 1 if line == "start" else -1
        peak = max(peak, running)
    assert peak <= 2


# ---- errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["show", "987654"], ["logs", "987654"], ["cancel", "987654"], ["wait", "987654"]])
def test_unknown_job_id_exits_1_with_one_line(g: Grid, command: list[str]) -> None:
    result = g.cli(*command)
    assert result.returncode == 1
    assert "987654" in one_line(result.stderr)


def test_unreachable_broker_exits_3_and_submit_wait_exits_125(g: Grid) -> None:
    for command in (["status"], ["jobs"], ["submit", "--", "true"], ["show", "1"]):
        result = g.cli(*command, broker="127.0.0.1:1")
        assert result.returncode == 3, command
        one_line(result.stderr)
    waited = g.cli("submit", "--wait", "--", "true", broker="127.0.0.1:1")
    assert waited.returncode == 125
    one_line(waited.stderr)


def test_no_token_anywhere_exits_3_with_one_line_saying_where_to_put_one(g: Grid) -> None:
    """Cannot authenticate (exit 3), not a usage error: the contract's code for a missing credential."""
    env = {k: v for k, v in g.env.items() if k != "GRIDD_TOKEN"}  # and no broker has made a token file here
    for command in (["status"], ["submit", "--", "true"], ["jobs"]):
        result = subprocess.run([*GRIDD, *command], capture_output=True, timeout=30, env=env)
        assert result.returncode == 3, (command, result.stderr)
        assert "GRIDD_TOKEN" in one_line(result.stderr)


def test_usage_errors_exit_2_with_one_line_and_help_lists_the_commands(g: Grid) -> None:
    for argv in (["status", "--no-such-flag"], ["submit", "--priority", "high", "--", "true"], ["frobnicate"]):
        result = subprocess.run([*GRIDD, *argv], capture_output=True, timeout=30, env=g.env)
        assert result.returncode == 2, argv
        assert b"Traceback" not in result.stderr
        one_line(result.stderr)
    top = subprocess.run([*GRIDD, "--help"], capture_output=True, timeout=30, env=g.env)
    assert top.returncode == 0
    for command in ("broker", "worker", "submit", "show", "jobs", "workers", "status", "logs", "wait", "cancel"):
        assert command in top.stdout.decode()
    sub = subprocess.run([*GRIDD, "submit", "--help"], capture_output=True, timeout=30, env=g.env)
    assert sub.returncode == 0 and b"--max-attempts" in sub.stdout


def test_client_finds_the_broker_through_gridd_broker_variable(g: Grid) -> None:
    """GRIDD_BROKER names the broker when --broker is not given."""
    env = dict(g.env, GRIDD_BROKER=str(g.addr))
    result = subprocess.run([*GRIDD, "status", "--json"], capture_output=True, timeout=30, env=env)
    assert result.returncode == 0, result.stderr

"""Cause-aware retries as a user runs them: `gridd submit --retry-on ... --retry-delay ...` on a real broker
and a real worker process. An exit status that is not listed fails the job after one attempt and `show`
says why; a listed one runs again after the delay, then twice as long; a list or a delay that cannot be
read is one line and exit 2, and nothing is submitted."""

from __future__ import annotations

from tests.e2e.conftest import Grid


def test_an_unlisted_exit_fails_at_once_and_a_listed_one_is_retried_with_a_doubling_delay(grid: Grid) -> None:
    grid.start_broker()
    grid.start_worker("w1")
    flags = ["--retry-on", "exit:75,signal:9", "--retry-delay", "0.3s", "--max-attempts", "3"]
    unlisted = grid.submit("sh", "-c", "exit 2", flags=flags)
    listed = grid.submit("sh", "-c", "exit 75", flags=flags)

    record = grid.wait_state(unlisted, "failed")
    assert (record["attempts"], record["exit_code"], record["poison"]) == (1, 2, False)
    assert record["reason"] == "exited with status 2; exit 2 is not in --retry-on exit:75,signal:9"
    assert (record["retry_on"], record["retry_delay_s"]) == (["exit:75", "signal:9"], 0.3)
    text = grid.ok("show", unlisted).splitlines()
    assert "retry on     exit:75,signal:9" in text
    assert "retry delay  0.3s, doubling each retry up to 3600s" in text
    assert "reason       exited with status 2; exit 2 is not in --retry-on exit:75,signal:9" in text

    record = grid.wait_state(listed, "failed")
    assert (record["attempts"], record["exit_code"], record["poison"]) == (3, 75, False)
    first, second, third = record["history"]
    assert second["started_ms"] - first["ended_ms"] >= 300  # the first retry waits the delay
    assert third["started_ms"] - second["ended_ms"] >= 600  # the next one twice as long


def test_a_retry_list_or_delay_that_cannot_be_read_is_one_line_exit_2_and_nothing_is_submitted(grid: Grid) -> None:
    grid.start_broker()
    for flags, line in [
        (
            ["--retry-on", "exit:abc"],
            "gridd: --retry-on: 'exit:abc' is not a cause: expected exit:N, exit:A-B, signal:N, timeout, lost,"
            " error or any",
        ),
        (["--retry-on", "exit:78-64"], "gridd: --retry-on: 'exit:78-64': the range goes backwards (write exit:64-78)"),
        (["--retry-on", "signal:99"], "gridd: --retry-on: 'signal:99': signal wants a number from 1 to 64"),
        (["--retry-delay=-1s"], "gridd: --retry-delay must be a duration of 0 or more, got '-1s'"),
        (["--retry-delay", "8d"], "gridd: --retry-delay must be a duration from 0 to 7d, such as 10s or 5m, got '8d'"),
    ]:
        result = grid.cli("submit", *flags, "--", "true")
        assert (result.returncode, result.stdout) == (2, b""), (flags, result)
        assert result.stderr.decode().splitlines() == [line]
    assert grid.json("jobs") == []

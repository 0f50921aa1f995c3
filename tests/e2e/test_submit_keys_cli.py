"""`gridd submit --key` as a person and a script use it: the same key again prints the first's id (a group:
its ids, one a line) and makes no job, also after the broker was killed with kill -9 and restarted; another
request under the key exits 1 with one line naming the key and the first's job; a key or TTL out of bounds
exits 2 with one line; a retried `submit --wait` behaves as the first would have."""

from __future__ import annotations

from tests.e2e.conftest import Grid


def one_line(stderr: bytes) -> str:
    lines = stderr.decode().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_key_makes_one_job_across_retries_and_a_broker_kill(grid: Grid) -> None:
    grid.start_broker()
    port = grid.port
    first = grid.submit("echo", "hi", flags=["--queue", "q", "--key", "deploy-42"])
    assert grid.submit("echo", "hi", flags=["--queue", "q", "--key", "deploy-42", "--key-ttl", "2d"]) == first

    other = grid.cli("submit", "--queue", "q", "--key", "deploy-42", "--", "echo", "bye")
    assert other.returncode == 1 and other.stdout == b""
    assert one_line(other.stderr) == (
        f"gridd: key deploy-42 was used for job {first} with a different request; nothing was submitted"
    )

    # A group: the key names the whole submission.
    ids = grid.ok("submit", "--queue", "q", "--array", "1-3", "--key", "batch", "--", "echo").split()
    assert len(ids) == 3
    assert grid.ok("submit", "--queue", "q", "--array", "1-3", "--key", "batch", "--", "echo").split() == ids
    group = grid.show(ids[0])["group"]
    bigger = grid.cli("submit", "--queue", "q", "--array", "1-4", "--key", "batch", "--", "echo")
    assert bigger.returncode == 1
    assert f"key batch was used for group {group} with a different request" in one_line(bigger.stderr)
    assert len(grid.json("jobs")) == 4

    # What was acknowledged is kept with its key: a broker killed now and restarted still knows both.
    grid.broker.kill()
    grid.broker.wait(timeout=10)
    grid.start_broker(port=port)
    assert grid.submit("echo", "hi", flags=["--queue", "q", "--key", "deploy-42"]) == first
    assert grid.ok("submit", "--queue", "q", "--array", "1-3", "--key", "batch", "--", "echo").split() == ids
    assert sorted(j["id"] for j in grid.json("jobs")) == sorted([first, *ids])


def test_a_key_or_ttl_out_of_bounds_is_a_usage_error_and_submits_nothing(grid: Grid) -> None:
    grid.start_broker()
    for flags, says in (
        (["--key", "has space"], "--key: a key holds printable ASCII characters only"),
        (["--key", "x" * 201], "--key: a key is at most 200 characters"),
        (["--key", "k", "--key-ttl", "30s"], "--key-ttl: a key is kept between 1 minute and 365 days"),
        (["--key", "k", "--key-ttl", "366d"], "--key-ttl: a key is kept between 1 minute and 365 days"),
        (["--key", "k", "--key-ttl", "never"], "--key-ttl: a key cannot be kept for ever"),
        (["--key", "k", "--key-ttl", "soon"], "--key-ttl wants a duration"),
        (["--key-ttl", "1d"], "--key-ttl applies to a submit with --key"),
    ):
        result = grid.cli("submit", "--queue", "q", *flags, "--", "true")
        assert result.returncode == 2, (flags, result.stderr)
        assert says in one_line(result.stderr), (flags, result.stderr)
    assert grid.json("jobs") == []


def test_a_retried_submit_wait_waits_for_the_first_job_and_exits_as_it_did(grid: Grid) -> None:
    grid.start_broker()
    grid.start_worker("A")
    argv = [
        "submit",
        "--key",
        "train-1",
        "--max-attempts",
        "1",
        "--wait",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]
    first = grid.cli(*argv)
    again = grid.cli(*argv)
    for result in (first, again):
        assert result.returncode == 3, result.stderr
        assert result.stdout == b"out\n"
        assert b"err\n" in result.stderr
    job = first.stderr.decode().splitlines()[0]
    assert again.stderr.decode().splitlines()[0] == job
    assert [j["id"] for j in grid.json("jobs")] == [job]
    assert grid.show(job)["attempts"] == 1  # ran once: the retry waited for it, and did not run it again

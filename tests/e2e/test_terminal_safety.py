"""A hostile command, reason or output cannot drive the terminal of whoever lists or reads it."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

from tests.e2e.conftest import GRIDD, Grid

HOSTILE = "\x1b]0;owned\x07\x1b[2J\u202e"


def test_jobs_show_and_status_escape_control_characters(grid: Grid) -> None:
    grid.start_broker()
    job = grid.submit("sh", "-c", f"printf '{HOSTILE}'; exit 3", HOSTILE, flags=["--max-attempts", "1"])
    grid.start_worker("w1")
    grid.wait_state(job, "failed")
    for args in (("jobs",), ("show", job), ("status",)):
        out = grid.ok(*args)
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, (args, out)
    assert "\\x1b]0;owned\\x07\\x1b[2J\\u202e" in grid.ok("show", job)
    # Scripts still get the exact command from --json, and the output byte for byte through a pipe.
    assert grid.show(job)["argv"][-1] == HOSTILE
    assert grid.ok("logs", job) == HOSTILE


def test_an_error_that_quotes_what_was_asked_escapes_it(grid: Grid) -> None:
    grid.start_broker()
    refused = grid.cli("show", f"9{HOSTILE}")
    assert refused.returncode == 1
    line = refused.stderr.decode()
    assert "\x1b" not in line and "\\x1b]0;owned" in line, line


def test_logs_escape_control_characters_on_a_terminal_unless_raw(grid: Grid) -> None:
    grid.start_broker()
    job = grid.submit("printf", f"line one\\n{HOSTILE}\\tend\\n")
    grid.start_worker("w1")
    grid.wait_state(job, "succeeded")
    shown = _on_a_terminal(grid, "logs", job)
    assert shown.replace(b"\r\n", b"\n") == b"line one\n\\x1b]0;owned\\x07\\x1b[2J\\u202e\tend\n"
    assert HOSTILE.encode() in _on_a_terminal(grid, "logs", job, "--raw")


def _on_a_terminal(grid: Grid, *args: str) -> bytes:
    """Run `gridd ARGS --broker ADDR` with its stdout on a pseudo-terminal; everything it wrote there."""
    assert grid.addr is not None
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*GRIDD, args[0], "--broker", grid.addr, *args[1:]],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
        env=grid.env,
    )
    os.close(follower)
    out = b""
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the process closed its side
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
    finally:
        os.close(leader)
        proc.wait(timeout=10)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else b""
    return out

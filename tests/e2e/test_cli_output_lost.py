"""A command asked once (submit, show, status) ends its process itself (gridd/cli/main.py `_end_now`): output
that cannot be written (a reader gone, a full disk) is still one line and exit 1, never Python's "Exception
ignored" and exit 120. Run with stdout block-buffered, as in a pipeline: the write happens at the end."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import GRIDD, Grid


def _buffered_env(grid: Grid) -> dict[str, str]:
    env = {k: v for k, v in grid.env.items() if k != "PYTHONUNBUFFERED"}
    env["GRIDD_BROKER"] = str(grid.addr)
    return env


@pytest.mark.parametrize("argv", [["status"], ["show", "JOB"], ["submit", "--", "true"]])
def test_a_reader_gone_is_exit_1_and_nothing_on_stderr(grid: Grid, argv: list[str]) -> None:
    grid.start_broker()
    job = grid.submit("true")
    read, write = os.pipe()
    os.close(read)  # the reader is gone before a byte is written
    try:
        done = subprocess.run(
            [*GRIDD, *[job if a == "JOB" else a for a in argv]],
            stdout=write,
            stderr=subprocess.PIPE,
            env=_buffered_env(grid),
            timeout=30,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (1, b"")


def test_a_full_disk_is_one_line_and_exit_1(grid: Grid) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    grid.start_broker()
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [*GRIDD, "status"], stdout=full, stderr=subprocess.PIPE, env=_buffered_env(grid), timeout=30
        )
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 1
    assert len(lines) == 1 and lines[0].startswith("gridd: ") and "No space left on device" in lines[0], lines

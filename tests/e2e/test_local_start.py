"""`gridd broker & gridd worker &` on one machine, with no GRIDD_TOKEN: the worker may start first."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.conftest import JOBS_AS_WORKER
from tests.e2e.conftest import GRIDD, Grid
from tests.polling import wait_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_worker_started_before_its_local_broker_waits_for_the_token_file(grid: Grid, tmp_path: Path) -> None:
    """No token yet (the broker has not made its file): the worker waits for it rather than exit."""
    grid.env = {k: v for k, v in grid.env.items() if k != "GRIDD_TOKEN"}
    addr = f"127.0.0.1:{_free_port()}"
    log = tmp_path / "early.log"
    with log.open("wb") as out:
        argv = [*GRIDD, "worker", "--broker", addr, "--name", "early", "--log-format", "logfmt", *JOBS_AS_WORKER]
        worker = grid.spawn([*argv, "--work-dir", str(tmp_path / "w")], stdout=out, stderr=out)
    waiting = "event=worker.waiting_for_token"
    wait_until(lambda: worker.poll() is not None or waiting in log.read_text(), 15, "the worker to wait")
    assert worker.poll() is None, log.read_text()
    grid.spawn([*GRIDD, "broker", "--listen", addr], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    grid.addr = addr
    token = Path(grid.env["XDG_DATA_HOME"]) / "gridd" / "token"
    wait_until(token.exists, 15, "the broker's token file")
    grid.env["GRIDD_TOKEN"] = token.read_text().strip()  # for the CLI that checks
    grid.wait_worker_connected("early")

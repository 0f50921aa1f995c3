"""A flood of idle TCP connections (no byte sent) does not take the broker down: run it with few file
descriptors, open more connections than it has, and it still answers `gridd status` and never exits."""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
from pathlib import Path

from tests.conftest import seed_ca
from tests.e2e.conftest import GRIDD, Grid, wait_until

FD_LIMIT = 128
FLOOD = 200  # more than FD_LIMIT; 20 per source address, under the per-address cap (32)


def _few_files() -> None:  # runs in the broker's child process, before it executes Python
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def _start_broker(grid: Grid, log: Path) -> subprocess.Popen[bytes]:
    seed_ca(grid.data_dir)
    argv = [*GRIDD, "broker", "--listen", "127.0.0.1:0", "--data-dir", str(grid.data_dir), "--log-format", "logfmt"]
    with log.open("wb") as out:
        proc = grid.spawn(argv, stdout=out, stderr=out, preexec_fn=_few_files)
    addr_file = grid.data_dir / "broker.addr"

    def bound() -> str | None:
        assert proc.poll() is None, log.read_text()
        return addr_file.read_text().strip() if addr_file.exists() else None

    grid.addr = wait_until(bound, 15, "the broker to listen", every_s=0.05)
    return proc


def test_more_idle_connections_than_file_descriptors_do_not_stop_the_broker(grid: Grid, tmp_path: Path) -> None:
    log = tmp_path / "flood-broker.log"
    broker = _start_broker(grid, log)
    port = grid.port
    flood: list[socket.socket] = []
    try:
        for i in range(FLOOD):
            conn = socket.socket()
            conn.bind((f"127.0.0.{2 + i % 10}", 0))
            conn.connect(("127.0.0.1", port))  # completes in the kernel's backlog even when not accepted
            flood.append(conn)

        # Out of descriptors, the broker backs off, drops the silent connections after the handshake
        # timeout, and takes the queued ones (and this status) as descriptors come free.
        def answers() -> bool:
            assert broker.poll() is None, f"the broker exited:\n{log.read_text()}"
            return grid.cli("status").returncode == 0

        wait_until(answers, 60, "gridd status to answer", every_s=0.5)
        text = log.read_text()
        assert f"event=broker.open_files soft={FD_LIMIT} hard={FD_LIMIT}" in text
        assert 1 <= text.count("event=accept.fd_exhausted") < 10  # it did run out; logged once per episode
    finally:
        for conn in flood:
            with contextlib.suppress(OSError):
                conn.close()
    grid.ok("submit", "--", "true")
    assert broker.poll() is None

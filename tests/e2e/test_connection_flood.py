"""A flood of idle TCP connections (no byte sent) does not take the broker down: run it with few file
descriptors, open more connections than it has, and it still answers `gridd status` and never exits."""

from __future__ import annotations

import contextlib
import resource
import socket

from tests.e2e.conftest import Grid
from tests.polling import wait_until

FD_LIMIT = 128
FLOOD = 200  # more than FD_LIMIT; 20 per source address, under the per-address cap (32)


def _few_files() -> None:  # runs in the broker's child process, before it executes Python
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def test_more_idle_connections_than_file_descriptors_do_not_stop_the_broker(grid: Grid) -> None:
    grid.start_broker(flags=["--log-format", "logfmt"], preexec_fn=_few_files)
    broker, log = grid.broker, grid.broker_log
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

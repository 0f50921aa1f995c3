"""A throwaway Redis server for the peer benchmarks, made with Debian's `redis-server` package.

`RedisServer` starts `redis-server` in the foreground on a free 127.0.0.1 port, with its working directory
in a fresh temp dir and no persistence (no RDB snapshots, no append-only file: the peers' queues live in
memory, as a default Redis install keeps them between snapshots), waits until it answers PING, and stops it
by PID afterwards (SIGTERM, then SIGKILL: the harness's stop_process), removing the temp dir. Use it as a
context manager so the stop runs in a `finally`. Like tests/pgserver.py for PostgreSQL: no Python Redis
client is needed here.

`python -m benchmarks.setup_peers` installs the package when `redis-server` is not on PATH.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from benchmarks.harness import stop_process

INSTALL_HINT = "run `python -m benchmarks.setup_peers` (apt-get install redis-server)"
_PORT_TRIES = 3  # a port picked free may be taken before redis binds it: pick another, this many times
LOG_TAIL_LINES = 10


class RedisServerError(RuntimeError):
    """The throwaway Redis server could not be found or started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ping(port: int, timeout_s: float = 1.0) -> bool:
    """True once the server on 127.0.0.1:port answers PING with +PONG (RESP, no client library)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One throwaway server: `with RedisServer() as r: r.url(0)`. See the module's docstring."""

    def __init__(self, *, start_timeout_s: float = 20.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisServerError(f"no redis-server on PATH: {INSTALL_HINT}")
        self.binary = binary
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self.root: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def log_path(self) -> Path:
        assert self.root is not None
        return self.root / "redis.log"

    def start(self) -> RedisServer:
        self.root = Path(tempfile.mkdtemp(prefix="gridd-bench-redis-"))
        for _ in range(_PORT_TRIES):
            self.port = free_port()
            if self._start_once():
                return self
        self.stop()
        raise RedisServerError(f"redis-server did not start on a free port in {_PORT_TRIES} tries: {self._log_tail()}")

    def _start_once(self) -> bool:
        assert self.root is not None
        argv = [
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "yes"),
            *("--dir", str(self.root), "--save", "", "--appendonly", "no"),
            *("--daemonize", "no", "--logfile", str(self.log_path), "--databases", "4"),
        ]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:  # e.g. the port was taken meanwhile
                self.proc = None
                return False
            if ping(self.port):
                return True
            time.sleep(0.01)
        self._kill()
        raise RedisServerError(f"redis-server did not answer PING within {self.start_timeout_s:g}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-LOG_TAIL_LINES:])
        return "(no log)"

    def _kill(self, grace_s: float = 5.0) -> None:
        """SIGTERM (redis exits without saving: there is nothing to save), then SIGKILL. Only our process."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc, grace_s)

    def stop(self) -> None:
        self._kill()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

"""POSIX output pipes of a job, drained into spool files while waiting for the job's exit.

Part of the host_os interface (gridd.worker.host_os re-exports it). Pipes are read non-blocking under
poll(2); the exit wakes the wait at once through a pidfd (Linux 5.3+), else it is looked at every
EXIT_POLL_S.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Callable
from typing import IO

from gridd.worker.host_os.posix_processes import JobProcess

EXIT_POLL_S = 0.05  # how often the exit is checked where the system has no pidfd
_READ_BYTES = 65536


class Spool:
    """One output stream of an attempt: a pipe the job writes, drained into a file up to `limit` bytes.
    Past the limit what arrives is read and dropped (`cut`), so the job never blocks on a full pipe.
    The file is made (by `make_file`: an anonymous one) when the first byte arrives: most short jobs
    write nothing, and a file is a new inode on disk to allocate and free, per stream and per job."""

    def __init__(self, make_file: Callable[[], IO[bytes]], limit: int) -> None:
        self._make_file = make_file
        self.file: IO[bytes] | None = None
        self.limit = limit
        self.kept = 0  # bytes in the file: what a follower may read
        self.total = 0  # all it wrote, kept or not
        self.cut = False
        self.fd, self.write_end = os.pipe()
        os.set_blocking(self.fd, False)
        self.open = True

    def spawned(self) -> None:
        """The job has its copy of the write end (or failed to start): ours goes."""
        if self.write_end >= 0:
            os.close(self.write_end)
            self.write_end = -1

    def pump(self) -> None:
        """Move what the pipe holds now into the file (up to the limit); `open` turns False at its end."""
        for _ in range(16):  # a bounded turn: the other stream and the exit are looked at in between
            try:
                data = os.read(self.fd, _READ_BYTES)
            except BlockingIOError:
                return
            if not data:
                self.open = False
                return
            self.total += len(data)
            room = self.limit - self.kept
            if room > 0:
                if self.file is None:
                    self.file = self._make_file()
                # Written past the file object's buffer: a follower's pread sees it at once.
                os.write(self.file.fileno(), data[:room])
                self.kept += min(room, len(data))
            self.cut = self.cut or len(data) > room

    def read(self, start: int, end: int) -> bytes:
        """Kept bytes from `start` to `end` (at most `kept`)."""
        if self.file is None or end <= start:
            return b""
        return os.pread(self.file.fileno(), end - start, start)

    def head(self) -> tuple[bytes, bool]:
        """The first `limit` bytes the job wrote, and whether it wrote more."""
        return self.read(0, self.kept), self.cut

    def close(self) -> None:
        """The pipe, and the file (nobody may read it any more)."""
        self.spawned()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.file is not None:
            self.file.close()
            self.file = None


class ExitWatch:
    """Waits for a process while draining its output pipes (see the module docstring)."""

    def __init__(self, proc: JobProcess) -> None:
        self._proc = proc
        self._pidfd = -1

    def __enter__(self) -> ExitWatch:
        with contextlib.suppress(AttributeError, OSError):
            self._pidfd = os.pidfd_open(self._proc.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)

    def pump(
        self,
        spools: list[Spool],
        left: Callable[[], float] | None,
        tick: Callable[[], None] | None = None,
        every_s: float = 1.0,
    ) -> bool:
        """Drain `spools` until the process exits (True) or `left()` seconds run out first (False);
        meanwhile `tick()` every `every_s` (the first once it has run that long)."""
        next_tick = time.monotonic() + every_s
        while not self._exited():
            wait_s = 1.0 if self._pidfd >= 0 else EXIT_POLL_S
            if left is not None:
                remaining = left()
                if remaining <= 0:
                    return False
                # Looked at again at least every second: a stopped job's clock stands still meanwhile.
                wait_s = min(wait_s, remaining)
            if tick is not None:
                now = time.monotonic()
                if now >= next_tick:
                    tick()
                    next_tick = now + every_s
                wait_s = min(wait_s, max(0.0, next_tick - now))
            _poll(spools, wait_s, self._pidfd)
        return True

    def _exited(self) -> bool:
        """Whether the process has exited, leaving it unreaped (WNOWAIT): reap's wait4 takes its rusage."""
        info = os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return info is not None and info.si_pid != 0


def drain(spools: list[Spool], deadline: float) -> None:
    """After the job's group is gone: what is still in the pipes, until their end (or the deadline, if a
    process that escaped the group holds one open)."""
    while any(s.open for s in spools) and (left := deadline - time.monotonic()) > 0:
        _poll(spools, left)


def _poll(spools: list[Spool], wait_s: float, also: int = -1) -> None:
    """Wait up to `wait_s` for output (or for `also` to be readable), and move what came."""
    poller = select.poll()
    by_fd = {s.fd: s for s in spools if s.open}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    if also >= 0:
        poller.register(also, select.POLLIN)
    for fd, _ in poller.poll(wait_s * 1000):
        spool = by_fd.get(fd)
        if spool is not None:
            spool.pump()

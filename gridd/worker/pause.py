"""Pause: stopping and continuing one attempt's process group, with a timeout clock that stands still
while it is stopped."""

from __future__ import annotations

import threading
import time

from gridd.worker import host_os


class Pause:
    """Stops and continues one attempt's process group from the event loop's thread; the attempt's
    timeout clock stands still while it is stopped. Suspending before the process exists stops it as
    soon as it is spawned."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pgid: int | None = None
        self._since: float | None = None  # monotonic time it was stopped, None while it runs
        self._stopped_s = 0.0  # time spent stopped before `_since`

    @property
    def suspended(self) -> bool:
        return self._since is not None

    @property
    def pgid(self) -> int | None:
        """The attempt's process group, once spawned."""
        return self._pgid

    def suspend(self) -> None:
        with self._lock:
            if self._since is None:
                self._since = time.monotonic()
                if self._pgid is not None:
                    host_os.stop_group(self._pgid)

    def resume(self) -> None:
        with self._lock:
            if self._since is not None:
                self._stopped_s += time.monotonic() - self._since
                self._since = None
                if self._pgid is not None:
                    host_os.continue_group(self._pgid)

    def attach(self, pgid: int) -> None:
        """The attempt's process group exists now."""
        with self._lock:
            self._pgid = pgid
            if self._since is not None:
                host_os.stop_group(pgid)

    def running_s(self, since: float) -> float:
        """Seconds since monotonic time `since`, less the time spent stopped."""
        with self._lock:
            now = time.monotonic()
            stopped = self._stopped_s + (now - self._since if self._since is not None else 0.0)
        return now - since - stopped

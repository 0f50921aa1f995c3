"""Who gets a connection: caps on peers that have not authenticated yet, and the open-files limit.

Rule: a stranger costs the broker a file descriptor until it proves the token, and strangers may hold
at most `max_unauthenticated` of them together (`max_unauthenticated_per_address` from one address), for
at most `handshake_timeout_s` each; so connections that never say a word cannot take the descriptors the
grid's own peers need. Past a cap a new connection is closed at once; refusals are counted, and logged
at most once every REFUSALS_LOG_S with how many there were.
"""

from __future__ import annotations

import math
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from gridd.config import BrokerConfig

log = structlog.get_logger()

REFUSALS_LOG_S = 10.0


@dataclass(frozen=True)
class ConnectionLimits:
    max_unauthenticated: int = 256
    max_unauthenticated_per_address: int = 32
    handshake_timeout_s: float = 5.0
    idle_timeout_s: float = 300.0  # a client's silence with no long poll in flight (workers: heartbeats)

    @classmethod
    def of(cls, config: BrokerConfig) -> ConnectionLimits:
        return cls(
            config.max_unauthenticated,
            config.max_unauthenticated_per_address,
            config.handshake_timeout_s,
            config.idle_timeout_s,
        )


class Ticket:
    """One admitted connection's place among the unauthenticated; released once, when it authenticates
    or closes, whichever is first."""

    __slots__ = ("_admission", "_address")

    def __init__(self, admission: Admission, address: str) -> None:
        self._admission: Admission | None = admission
        self._address = address

    def release(self) -> None:
        if self._admission is not None:
            self._admission._leave(self._address)
            self._admission = None


class Admission:
    """Counts the connections that have not authenticated, in all and by remote address."""

    def __init__(self, limits: ConnectionLimits, now: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._now = now
        self._by_address: Counter[str] = Counter()
        self.unauthenticated = 0
        self.connections = 0  # open now, authenticated or not (the listener counts them)
        self.refused = 0  # since start
        self._unlogged = 0
        self._logged_at = -math.inf

    def admit(self, address: str) -> Ticket | None:
        """A ticket for a new connection from `address`, or None: close it at once."""
        limits = self.limits
        if self.unauthenticated >= limits.max_unauthenticated:
            self._refuse(address, "total")
            return None
        if self._by_address[address] >= limits.max_unauthenticated_per_address:
            self._refuse(address, "address")
            return None
        self.unauthenticated += 1
        self._by_address[address] += 1
        return Ticket(self, address)

    def _leave(self, address: str) -> None:
        self.unauthenticated -= 1
        self._by_address[address] -= 1
        if not self._by_address[address]:
            del self._by_address[address]

    def _refuse(self, address: str, cap: str) -> None:
        self.refused += 1
        self._unlogged += 1
        now = self._now()
        if now - self._logged_at >= REFUSALS_LOG_S:
            log.warning(
                "conn.over_limit",
                cap=cap,
                address=address,
                refused=self._unlogged,
                unauthenticated=self.unauthenticated,
                max_total=self.limits.max_unauthenticated,
                max_per_address=self.limits.max_unauthenticated_per_address,
            )
            self._logged_at, self._unlogged = now, 0


def raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard one (systemd's LimitNOFILE sets both): every peer
    costs a descriptor, and the soft default of 1,024 is a grid of a few hundred workers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard
    if wanted != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:  # e.g. an unlimited hard limit above the kernel's nr_open
            log.warning("broker.open_files_unchanged", soft=soft, hard=_shown(hard), error=str(exc))
            return
    log.info("broker.open_files", soft=_shown(wanted), hard=_shown(hard), was=_shown(soft))


def _shown(limit: int) -> int | str:
    return "unlimited" if limit == resource.RLIM_INFINITY else limit

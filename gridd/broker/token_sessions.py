"""The open connections of each role token, so that a revoked or expired token loses them at once.

A session that authenticated with a role token holds its place here while it is served; revoking the
token closes them all (each is told why, then its serving is cancelled), and `run` closes those of a
token as it expires (checked at least once a second, sooner when an expiry is nearer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import anyio
import structlog
from anyio.abc import TaskStatus

from gridd.broker.principals import Principal
from gridd.clock import Clock

log = structlog.get_logger()

CHECK_EVERY_S = 1.0  # a clock moved by hand (tests) is noticed within this

Close = Callable[[str], None]  # ends the session, with the reason it is told


class TokenSessions:
    """Token id -> its open sessions (each a principal and the way to close it)."""

    def __init__(self) -> None:
        self._open: dict[int, dict[int, tuple[Principal, Close]]] = {}
        self._next = 0

    @contextlib.contextmanager
    def hold(self, principal: Principal, close: Close) -> Iterator[None]:
        """Count the session as one of its token's while the block runs (the cluster token: not at all)."""
        token = principal.token_id
        if token is None:
            yield
            return
        self._next += 1
        key = self._next
        self._open.setdefault(token, {})[key] = (principal, close)
        try:
            yield
        finally:
            sessions = self._open.get(token, {})
            sessions.pop(key, None)
            if not sessions:
                self._open.pop(token, None)

    def close_token(self, token_id: int, why: str) -> int:
        """Close every open session of the token; returns how many."""
        sessions = self._open.pop(token_id, {})
        for _, close in list(sessions.values()):
            close(why)
        return len(sessions)

    def close_expired(self, now_ms: int) -> int:
        """Close the sessions of every token that has expired by `now_ms`; returns how many."""
        closed = 0
        for token_id, sessions in list(self._open.items()):
            principal = next(iter(sessions.values()))[0]
            if principal.expires_ms is not None and principal.expires_ms <= now_ms:
                log.info("token.expired", token=principal.name, connections=len(sessions))
                closed += self.close_token(token_id, f"token {principal.name!r} has expired")
        return closed

    def next_expiry_ms(self) -> int | None:
        times = [
            p.expires_ms for sessions in self._open.values() for p, _ in sessions.values() if p.expires_ms is not None
        ]
        return min(times, default=None)

    async def run(self, clock: Clock, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Close the connections of tokens as they expire, until cancelled."""
        task_status.started()
        while True:
            now = clock.now_ms()
            self.close_expired(now)
            nearest = self.next_expiry_ms()
            wait = CHECK_EVERY_S if nearest is None else (nearest - now) / 1000
            await anyio.sleep(min(CHECK_EVERY_S, max(0.01, wait)))

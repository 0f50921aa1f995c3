"""Who may see the page: the one-time login nonce and the session cookies, all kept in memory.

The nonce is printed once by `gridd web` and opens one session with the starter's credential; a session
made from the login form holds its own broker connection (`owned`), closed when the session ends.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from gridd.web.view import BrokerView

NONCE_TTL_S = 300.0
SESSION_IDLE_S = 12 * 3600.0


@dataclass
class Session:
    view: BrokerView
    last_used: float
    owned: anyio.CancelScope | None = None  # cancels the session's own broker connection
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))


class Sessions:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._nonces: dict[str, float] = {}  # nonce -> valid until
        self._sessions: dict[str, Session] = {}

    def new_nonce(self) -> str:
        nonce = secrets.token_urlsafe(24)
        self._nonces[nonce] = self._clock() + NONCE_TTL_S
        return nonce

    def take_nonce(self, nonce: str) -> bool:
        """True once per nonce, within its 5 minutes."""
        until = self._nonces.pop(nonce, None)
        return until is not None and self._clock() < until

    def open(self, view: BrokerView, owned: anyio.CancelScope | None = None) -> Session:
        self.sweep()
        session = Session(view, self._clock(), owned)
        self._sessions[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session the cookie names (its idle clock restarts), or None."""
        self.sweep()
        session = self._sessions.get(token or "")
        if session is not None:
            session.last_used = self._clock()
        return session

    def sweep(self) -> None:
        """End the sessions idle past SESSION_IDLE_S (closing their own connections) and stale nonces."""
        now = self._clock()
        for token, session in list(self._sessions.items()):
            if now - session.last_used > SESSION_IDLE_S:
                del self._sessions[token]
                if session.owned is not None:
                    session.owned.cancel()
        for nonce, until in list(self._nonces.items()):
            if now >= until:
                del self._nonces[nonce]

"""Role tokens as an admin makes and revokes them (`gridd token`), and the credential strings peers are given.

Rule: the broker keeps only a token's hash; its secret exists once, in the credential string returned here.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import structlog

from gridd.broker.credentials import secret_digest
from gridd.broker.principals import CLUSTER_ADMIN, ROLES
from gridd.broker.store import Store
from gridd.broker.token_sessions import TokenSessions
from gridd.clock import Clock
from gridd.config import check_worker_name
from gridd.protocol.credentials import format_credential
from gridd.protocol.errors import ConfigError, InvalidRequest
from gridd.protocol.messages import TokenView

log = structlog.get_logger()


class TokenDesk:
    """Makes, revokes and formats credentials; closes a revoked token's open connections."""

    def __init__(self, store: Store, clock: Clock, sessions: TokenSessions, ca_digest: str | None) -> None:
        self._store = store
        self._clock = clock
        self._sessions = sessions
        self._ca_digest = ca_digest  # sha256 of the broker CA (gridd/broker/tls.py); credentials pin it

    def credential_for(self, secret: str) -> str:
        """The credential string a peer is given for `secret`: it names this broker's CA, so the peer
        checks the broker before it sends the secret (gridd/protocol/credentials.py)."""
        return format_credential(self._ca_digest, secret) if self._ca_digest else secret

    async def create_token(
        self, name: str, role: str, queues: Sequence[str], expires_s: float | None
    ) -> tuple[str, TokenView]:
        """A new role token: its credential string (shown once; the broker keeps only its hash) and view."""
        try:
            check_worker_name(name, "a token's name")  # a worker token's name is its worker's name
        except ConfigError as exc:
            raise InvalidRequest(str(exc)) from None
        if name == CLUSTER_ADMIN.name:
            raise InvalidRequest(f"the name {name!r} is the cluster token's (the owner of its jobs): pick another")
        if role not in ROLES:
            raise InvalidRequest(f"unknown role {role!r}; roles are: {', '.join(ROLES)}")
        if role in ("admin", "read") and queues:
            raise InvalidRequest(f"--queues limits a submit or worker token; a {role} token has none")
        secret = secrets.token_urlsafe(24)  # 192 bits
        now = self._clock.now_ms()
        expires = None if expires_s is None else now + max(1, round(expires_s * 1000))
        kept = list(dict.fromkeys(queues))
        view = await self._store.create_token(name, role, kept, secret_digest(secret), now, expires)
        log.info("token.created", token=name, role=role, queues=view.queues, expires_ms=expires)
        return self.credential_for(secret), view

    async def revoke_token(self, name: str) -> tuple[TokenView, int]:
        """Refuse the token from now on and close its open connections; returns it and how many."""
        row = await self._store.revoke_token(name, self._clock.now_ms())
        closed = self._sessions.close_token(row.id, f"token {name!r} was revoked")
        log.info("token.revoked", token=name, closed=closed)
        return row.view, closed

"""Which Principal a presented secret stands for: the broker's one place that checks credentials.

Secrets are compared as sha256 digests: the cluster token in constant time, role tokens by looking up
the digest (a unique key) among the hashes the store keeps. The broker keeps no secret but the cluster
token it was configured with (or made), and never sends a peer anything derived from one.
"""

from __future__ import annotations

import hashlib
import hmac

import structlog

from gridd.broker.principals import CLUSTER_ADMIN, ROLES, Principal
from gridd.broker.store.interface import Store
from gridd.clock import Clock
from gridd.protocol.credentials import parse_credential
from gridd.protocol.errors import StorageFailed

log = structlog.get_logger()

TOUCH_EVERY_MS = 60_000  # a token's last use is written at most once a minute, not at every connection


class Credentials:
    """The secrets this broker accepts: the cluster token (the admin credential) and, given the store,
    the role tokens in force (neither revoked nor expired)."""

    def __init__(self, cluster_secret: str, store: Store | None = None, clock: Clock | None = None) -> None:
        # Given as a full credential string (gridd1-<CA digest>-<secret>) too: only its secret is checked.
        self._cluster = _digest(parse_credential(cluster_secret)[1])
        self._store = store
        self._clock = clock
        self._touched: dict[int, int] = {}  # token id -> the last use written for it

    async def authenticate(self, secret: str) -> Principal | None:
        """The Principal `secret` speaks for, or None if it is no credential of this broker in force."""
        digest = _digest(secret)
        if hmac.compare_digest(digest, self._cluster):
            return CLUSTER_ADMIN
        if self._store is None or self._clock is None or not secret:
            return None
        found = await self._store.find_token(digest.hex())
        if found is None:
            return None
        token, now = found.view, self._clock.now_ms()
        if token.revoked_ms is not None or (token.expires_ms is not None and token.expires_ms <= now):
            log.info("auth.token_refused", token=token.name, revoked=token.revoked_ms is not None)
            return None
        if token.role not in ROLES:  # a row from a newer gridd: it speaks for nobody here
            return None
        if now - self._touched.get(found.id, 0) >= TOUCH_EVERY_MS:
            self._touched[found.id] = now
            try:
                await self._store.touch_tokens([(now, found.id)])
            except StorageFailed as exc:  # when it was used is worth less than letting it in
                log.warning("token.touch_failed", token=token.name, error=str(exc))
        return Principal(
            name=token.name,
            role=token.role,  # narrowed by the check against ROLES above
            queues=tuple(token.queues),
            token_id=found.id,
            expires_ms=token.expires_ms,
        )


def secret_digest(secret: str) -> str:
    """The hex sha256 under which the store keeps a token's secret."""
    return _digest(secret).hex()


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()

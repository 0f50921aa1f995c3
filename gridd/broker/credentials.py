"""Which Principal a presented secret stands for: the broker's one place that checks credentials.

Secrets are compared as sha256 digests, in constant time; the broker keeps no secret but the cluster
token it was configured with (or made), and never sends a peer anything derived from one.
"""

from __future__ import annotations

import hashlib
import hmac

from gridd.broker.principals import CLUSTER_ADMIN, Principal
from gridd.protocol.credentials import parse_credential


class Credentials:
    """The secrets this broker accepts: the cluster token (the admin credential)."""

    def __init__(self, cluster_secret: str) -> None:
        # Given as a full credential string (gridd1-<CA digest>-<secret>) too: only its secret is checked.
        self._cluster = _digest(parse_credential(cluster_secret)[1])

    async def authenticate(self, secret: str) -> Principal | None:
        """The Principal `secret` speaks for, or None if it is no credential of this broker."""
        if hmac.compare_digest(_digest(secret), self._cluster):
            return CLUSTER_ADMIN
        return None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()

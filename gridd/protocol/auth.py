"""Challenge-response over the cluster secret: HMAC-SHA256, the secret never crosses the wire.

Each side proves itself over the other's fresh nonce, with a label per direction so that a proof can
never be reflected back as the other side's.
"""

from __future__ import annotations

import hashlib
import hmac
import os

NONCE_BYTES = 32


def new_nonce() -> bytes:
    """A fresh random nonce."""
    return os.urandom(NONCE_BYTES)


def broker_proof(token: str, peer_nonce: bytes, broker_nonce: bytes) -> bytes:
    """What the broker sends to show it knows the secret."""
    return _mac(token, b"gridd-broker\0" + peer_nonce + broker_nonce)


def peer_proof(token: str, peer_nonce: bytes, broker_nonce: bytes) -> bytes:
    """What a peer sends to show it knows the secret."""
    return _mac(token, b"gridd-peer\0" + broker_nonce + peer_nonce)


def proofs_match(expected: bytes, given: bytes) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(expected, given)


def _mac(token: str, data: bytes) -> bytes:
    return hmac.new(token.encode("utf-8", "surrogateescape"), data, hashlib.sha256).digest()

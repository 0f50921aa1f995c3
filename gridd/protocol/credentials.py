"""The credential string a broker hands out: `gridd1-<CA digest>-<secret>`, and its parts. Pure.

The digest (64 lowercase hex: sha256 of the broker CA certificate's DER) lets a peer check the broker
before it sends the secret, with no file to copy (Docker Swarm's join tokens do the same). The secret
may itself hold '-' and '_' (`secrets.token_urlsafe`), so a credential is parsed by its fixed prefix and
the 64-hex field, and the rest is the secret. A string without the prefix is a plain secret: the
cluster token of gridd before credentials, which names no CA.
"""

from __future__ import annotations

import re

from gridd.protocol.errors import ConfigError

PREFIX = "gridd1-"
DIGEST_HEX = 64
# 128 bits: the shortest `secrets.token_urlsafe(16)` is 22 characters. A shorter configured secret is
# refused (a broker no longer gives anyone an offline oracle, but a short secret is still guessable online
# and often reused).
MIN_SECRET_CHARS = 22
_DIGEST = re.compile(r"[0-9a-f]{64}")


def new_secret() -> str:
    """A fresh secret: 192 random bits."""
    import secrets  # start-up: a client command only reads a secret (secrets imports random)

    return secrets.token_urlsafe(24)


def ca_digest(ca_der: bytes) -> str:
    """The digest a credential pins: sha256 over the CA certificate's DER, 64 lowercase hex."""
    import hashlib  # start-up: a client that kept the broker's CA computes no digest

    return hashlib.sha256(ca_der).hexdigest()


def format_credential(digest: str, secret: str) -> str:
    if not _DIGEST.fullmatch(digest):
        raise ValueError("a CA digest is 64 lowercase hex digits")
    return f"{PREFIX}{digest}-{secret}"


def parse_credential(text: str) -> tuple[str | None, str]:
    """(CA digest, secret); digest None for a plain secret. ConfigError for a damaged credential."""
    text = text.strip()
    if not text.startswith(PREFIX):
        return None, text
    rest = text[len(PREFIX) :]
    digest, dash, secret = rest[:DIGEST_HEX], rest[DIGEST_HEX : DIGEST_HEX + 1], rest[DIGEST_HEX + 1 :]
    if not _DIGEST.fullmatch(digest) or dash != "-" or not secret:
        raise ConfigError(
            f"the credential {text[:20]}... is damaged: it should read {PREFIX}<64 hex digits>-<secret>, "
            "as `gridd token create` or the broker's token file gives it"
        )
    return digest, secret


def weak_secret(secret: str) -> bool:
    """True for a secret under 128 bits by the simplest honest estimate: its length."""
    return len(secret) < MIN_SECRET_CHARS

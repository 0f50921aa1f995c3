"""The cluster secret: GRIDD_TOKEN when set, else the one the broker keeps in DATA_DIR/token (0600).

The token file holds the full credential string, `gridd1-<CA digest>-<secret>`, so that
`export GRIDD_TOKEN=$(cat DATA_DIR/token)` on another machine gives it the broker's pin too. A token
file of an older gridd (the plain secret) or one naming a CA that was replaced is rewritten in that
form: the secret stays, so whatever used the old text keeps authenticating.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import structlog

from gridd.config import read_secret_file
from gridd.protocol.credentials import MIN_SECRET_CHARS, format_credential, new_secret, parse_credential, weak_secret
from gridd.protocol.errors import ConfigError

log = structlog.get_logger()

TOKEN_FILE = "token"
MAKE_ONE = "python3 -c 'import secrets; print(secrets.token_urlsafe(24))'"


def broker_token(configured: str | None, data_dir: Path, ca_digest: str, *, loopback: bool = False) -> str:
    """The cluster secret the broker demands; creates (or brings up to date) the token file if none is
    configured. ConfigError for a credential of another CA, and for a weak secret unless the broker
    listens on loopback only (`loopback`), where it is a warning: there only this machine's users can
    try guesses, one TLS connection each, and scripts made before secrets were checked keep running."""
    if configured:
        digest, secret = parse_credential(configured)
        if digest is not None and digest != ca_digest:
            raise ConfigError(
                f"GRIDD_TOKEN is a credential of another CA (sha256 {digest[:12]}...), not of this broker's "
                f"(sha256 {ca_digest[:12]}..., in {data_dir / 'tls'}): restore that CA, or give the plain secret"
            )
        _refuse_weak(secret, "GRIDD_TOKEN (the cluster secret)", loopback)
        return secret
    path = data_dir / TOKEN_FILE
    try:
        text = read_secret_file(str(path), "token file")
    except FileNotFoundError:
        text = None
    if text is None:
        secret = new_secret()
        if not _create(path, format_credential(ca_digest, secret)):  # another process won the race
            return broker_token(None, data_dir, ca_digest, loopback=loopback)
        return secret
    _, secret = parse_credential(text)
    _refuse_weak(secret, f"the secret in {path}", loopback)
    wanted = format_credential(ca_digest, secret)
    if text != wanted:
        tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        _create(tmp, wanted)
        tmp.replace(path)
        log.warning("broker.token_file_rewritten", path=str(path), why="now the credential string of this CA")
    return secret


def is_loopback(host: str) -> bool:
    """Whether a broker listening on `host` can be reached from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name, or a wildcard such as "" (every address)
        return False


def _refuse_weak(secret: str, what: str, loopback: bool) -> None:
    if not weak_secret(secret):
        return
    why = f"{what} is {len(secret)} characters, under 128 bits (at least {MIN_SECRET_CHARS} of token_urlsafe)"
    if loopback:
        log.warning("auth.weak_secret", why=why, make_one=MAKE_ONE, refused_when="listening beyond loopback")
        return
    raise ConfigError(f"{why}, on a broker reachable from the network; make one with: {MAKE_ONE}")


def _create(path: Path, text: str) -> bool:
    """Write a new 0600 file; False if it exists already."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    return True

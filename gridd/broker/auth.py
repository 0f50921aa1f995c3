"""The cluster token: GRIDD_TOKEN when set, else a random one the broker writes to its data dir (0600)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from gridd.protocol.errors import ConfigError

TOKEN_FILE = "token"


def broker_token(configured: str | None, data_dir: Path) -> str:
    """The token the broker demands; creates the token file on first start if none is configured."""
    if configured:
        return configured
    path = data_dir / TOKEN_FILE
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its token
        return _read(path)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def _read(path: Path) -> str:
    token = path.read_text().strip()
    if not token:
        raise ConfigError(f"token file {path} is empty; delete it to make a new one, or set GRIDD_TOKEN")
    return token

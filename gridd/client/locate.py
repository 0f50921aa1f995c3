"""Where the broker is and which token proves we belong, when a program does not say."""

from __future__ import annotations

import os

from gridd.config import DEFAULT_PORT, Config, default_data_dir, load_config
from gridd.protocol.errors import NoToken


def broker_address(config: Config) -> str:
    """--broker, GRIDD_BROKER or the config file; else the local broker's address file; else the default."""
    if config.client.broker:
        return config.client.broker
    addr = default_data_dir(os.environ) / "broker.addr"
    try:
        return addr.read_text().strip() or f"127.0.0.1:{DEFAULT_PORT}"
    except OSError:
        return f"127.0.0.1:{DEFAULT_PORT}"


def cluster_token(token: str | None) -> str:
    """GRIDD_TOKEN, else the token file in the default data dir (where a local broker made it)."""
    if token:
        return token
    path = default_data_dir(os.environ) / "token"
    try:
        return path.read_text().strip()
    except OSError:
        raise NoToken(f"no cluster token: set GRIDD_TOKEN, or run where the broker's {path} is readable") from None


def resolve(address: str | None, token: str | None) -> tuple[str, str]:
    """The address and token to use: those given, else what the CLI would use (see above)."""
    if address and token:
        return address, token
    config = load_config(None, os.environ, {})
    return address or broker_address(config), cluster_token(token or config.client.token)

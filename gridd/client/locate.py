"""Where the broker is and which credential proves we belong, when a program does not say.

Credential lookup order: --token-file, GRIDD_TOKEN (or the config file's `token`), the login file
(`gridd login`: $XDG_CONFIG_HOME/gridd/credential), the local broker's token file. A file holding a
secret that others may read is refused (config.read_secret_file).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping

import msgspec

from gridd.config import (
    DEFAULT_PORT,
    Config,
    default_config_path,
    default_data_dir,
    load_config,
    parse_addresses,
    read_secret_file,
)
from gridd.protocol.errors import ConfigError, NoToken

LOGIN_FILE = "credential"


class Login(msgspec.Struct, frozen=True):  # not a dataclass: see gridd/protocol/handshake.py
    broker: str
    credential: str


def login_path(environ: Mapping[str, str]) -> str:
    return os.path.join(os.path.dirname(default_config_path(environ)), LOGIN_FILE)


def read_login(environ: Mapping[str, str]) -> Login | None:
    """What `gridd login` kept, or None."""
    path = login_path(environ)
    try:
        text = read_secret_file(path, "credential file")
    except FileNotFoundError:
        return None
    import json  # lazy for start-up speed, as in trust.py: only a login file needs it

    try:
        data = json.loads(text)
        return Login(broker=str(data["broker"]), credential=str(data["credential"]))
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"credential file {path} is damaged: run `gridd login` again") from None


def write_login(environ: Mapping[str, str], login: Login) -> str:
    """Keep the credential and its broker (0600, in a 0700 directory), atomically."""
    path = login_path(environ)
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = os.path.join(directory, f".{LOGIN_FILE}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    import json  # lazy for start-up speed (see read_login)

    with os.fdopen(fd, "w") as f:
        f.write(json.dumps({"broker": login.broker, "credential": login.credential}) + "\n")
    os.replace(tmp, path)
    return path


def broker_address(config: Config) -> str:
    """--broker, GRIDD_BROKER or the config file; else the login file's; else the local broker's address
    file; else the default. It may name several brokers (client/addresses.py); ConfigError (exit 2, before
    anything is dialled) naming an entry that is not HOST:PORT."""
    address = _broker_address(config)
    parse_addresses(address)
    return address


def _broker_address(config: Config) -> str:
    if config.client.broker:
        return config.client.broker
    login = read_login(os.environ)
    if login is not None:
        return login.broker
    addr = os.path.join(default_data_dir(os.environ), "broker.addr")
    try:
        with open(addr) as f:
            return f.read().strip() or f"127.0.0.1:{DEFAULT_PORT}"
    except OSError:
        return f"127.0.0.1:{DEFAULT_PORT}"


def cluster_token(token: str | None) -> str:
    """The credential given (--token-file, GRIDD_TOKEN), else the login file's, else the token file in
    the default data dir (where a local broker made it)."""
    if token:
        return token
    login = read_login(os.environ)
    if login is not None:
        return login.credential
    path = os.path.join(default_data_dir(os.environ), "token")
    try:
        return read_secret_file(path, "token file")
    except FileNotFoundError:
        pass
    except OSError:
        pass
    raise NoToken(
        f"no credential: set GRIDD_TOKEN, give --token-file, run `gridd login`, or run where the broker's {path} "
        "is readable"
    )


def resolve(address: str | None, token: str | None, insecure: bool | None = None) -> tuple[str, str, bool]:
    """The address, credential and transport to use: those given, else what the CLI would use (see above)."""
    if address and token and insecure is not None:
        return address, token, insecure
    config = load_config(None, os.environ, {})
    return (
        address or broker_address(config),
        cluster_token(token or config.client.token),
        config.client.insecure if insecure is None else insecure,
    )

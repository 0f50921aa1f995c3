"""`gridd login [CREDENTIAL|-]`: check a credential against the broker, then keep it for later commands.

The credential and the broker's address go to $XDG_CONFIG_HOME/gridd/credential (0600); the broker's CA
is kept beside it (gridd/client/trust.py) by the check itself. Later commands use them when neither
--token-file nor GRIDD_TOKEN is given. Nothing is kept if the broker refuses the credential or cannot
be verified.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

import anyio

from gridd.client.api import connect
from gridd.client.locate import Login, broker_address, write_login
from gridd.config import Config
from gridd.protocol.credentials import parse_credential
from gridd.protocol.errors import ConfigError


def run_login(args: argparse.Namespace, config: Config) -> int:
    credential = _credential(args.credential, config.client.token)
    parse_credential(credential)  # a damaged one is refused before anything is dialled
    address = broker_address(config)

    async def check() -> str:
        async with connect(address, credential, insecure=config.client.insecure, name="gridd-login") as client:
            return client.connection.welcome.broker_version

    version = anyio.run(check)
    path = write_login(os.environ, Login(broker=address, credential=credential))
    print(f"gridd: logged in to the broker at {address} (gridd {version}); kept in {path}", file=sys.stderr)
    return 0


def _credential(given: str | None, configured: str | None) -> str:
    """The argument; `-` (or nothing, when --token-file and GRIDD_TOKEN say nothing either) reads stdin,
    without echo on a terminal. A credential as an argument is visible to `ps`: `-` keeps it out."""
    if given is not None and given != "-":
        return given.strip()
    if given is None and configured:
        return configured
    text = getpass.getpass("credential: ") if sys.stdin.isatty() else sys.stdin.readline()
    if not text.strip():
        raise ConfigError("gridd login wants a credential: as an argument, on stdin (-), or GRIDD_TOKEN")
    return text.strip()

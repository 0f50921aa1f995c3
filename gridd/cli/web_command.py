"""`gridd web`: the dashboard in a browser, acting with the credential of whoever started it.

Like `gridd tui`, the broker's address is asked again at every reconnect (it follows a local broker that
restarted on another port). The one-time login link goes to stderr, once, as the only line printed.
"""

from __future__ import annotations

import sys

import anyio

from gridd.client.locate import broker_address, cluster_token
from gridd.config import Config
from gridd.web.server import serve
from gridd.web.view import BrokerView


def run_web(config: Config, listen: str) -> int:
    """Serve until interrupted; a credential that cannot be found is an error before listening."""
    token = cluster_token(config.client.token)
    insecure = config.client.insecure
    broker_address(config)  # a malformed address (of several: any) is a usage error before listening

    def address() -> str:
        return broker_address(config)

    def connect(credential: str) -> BrokerView:
        return BrokerView(address, credential, insecure=insecure)

    def ready(url: str) -> None:
        print(f"gridd web: open {url}", file=sys.stderr, flush=True)

    anyio.run(serve, listen, connect(token), connect, ready)
    return 0

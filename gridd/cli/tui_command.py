"""`gridd tui`: hands the dashboard where the broker is and the cluster token. Textual is imported only here.

The address is a callable, asked again at every reconnect: without --broker/GRIDD_BROKER it reads the
local broker's address file, so the dashboard follows a broker that restarted on another port. Given
several brokers, each reconnection goes to the first that answers (gridd/client/addresses.py).
"""

from __future__ import annotations

import anyio

from gridd.client.locate import broker_address, cluster_token
from gridd.config import Config


def run_tui(config: Config) -> int:
    """Run the dashboard until the user quits; returns the exit status (0 on `q`)."""
    from gridd.tui.app import GriddApp  # here, for start-up speed: only `gridd tui` loads Textual

    broker_address(config)  # a malformed --broker is a usage error now, not a reason to reconnect for ever
    token = cluster_token(config.client.token)
    app = GriddApp(lambda: broker_address(config), token, insecure=config.client.insecure)

    async def main() -> None:
        await app.run_async()

    anyio.run(main)
    return app.return_code or 0

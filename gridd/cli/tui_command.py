"""`gridd tui`: connects, then hands the client to the dashboard. Textual is imported only here."""

from __future__ import annotations

import anyio

from gridd.cli.commands import broker_address, cluster_token
from gridd.config import Config


def run_tui(config: Config) -> int:
    from gridd.tui.app import GriddApp

    address = broker_address(config)
    token = cluster_token(config.client.token)
    app = GriddApp(address, token)

    async def main() -> None:
        await app.run_async()

    anyio.run(main)
    return app.return_code or 0

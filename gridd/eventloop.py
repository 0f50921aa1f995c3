"""Which event loop the long-running processes (broker, worker) run on: uvloop's when it is installed
(`pip install 'gridd[uvloop]'`) and not turned off with GRIDD_UVLOOP=0, else asyncio's own.

Why: a no-op task costs the workers ~12 % less CPU on uvloop, the broker ~3 % (benchmarks/README.md, issue
20); everything else is the same, psycopg's async connections (PostgreSQL store, LISTEN) included. Short
commands (the CLI) keep asyncio's: importing uvloop would cost them more than it saves.
"""

from __future__ import annotations

import importlib.util
import os


def backend_options() -> dict[str, object]:
    """`anyio.run`'s backend options for a broker or a worker."""
    wanted = os.environ.get("GRIDD_UVLOOP", "1") != "0"
    return {"use_uvloop": True} if wanted and importlib.util.find_spec("uvloop") is not None else {}

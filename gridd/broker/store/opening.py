"""Which store a broker opens: SQLite in its data dir (the embedded default), or PostgreSQL at a URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from gridd.broker.observe import Observer
from gridd.broker.store.interface import Store
from gridd.broker.store.sqlite import open_store as open_sqlite_store
from gridd.protocol.errors import StorageFailed

URL_SCHEMES = ("postgresql://", "postgres://")


def is_database_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


@asynccontextmanager
async def open_store(location: str | Path, observer: Observer | None = None) -> AsyncIterator[Store]:
    """The store at `location`: a `postgresql://` URL, else the path of a SQLite file."""
    if not is_database_url(location):
        async with open_sqlite_store(Path(location), observer) as store:
            yield store
        return
    try:
        # optional dependency: psycopg comes with `pip install 'gridd[postgresql]'`, needed only here
        from gridd.broker.store.pg_store import open_pg_store
    except ImportError as exc:
        raise StorageFailed(f"the PostgreSQL store needs psycopg ({exc}): pip install 'gridd[postgresql]'") from exc
    async with open_pg_store(str(location), observer) as pg_store:
        yield pg_store

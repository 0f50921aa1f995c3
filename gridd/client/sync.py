"""The client for code that is not async (scripts, notebooks): the async Client driven through an anyio
blocking portal (client/blocking.py). Same methods, same names, same errors.

    with gridd.connect_sync() as grid:
        print(add.submit(1, 2).result())        # tasks use the innermost `with` of this thread
        for score in norms.map(points, batch=1000):
            ...
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from gridd.client import current
from gridd.client.blocking import SyncClient, SyncHandle, open_blocking

__all__ = ["SyncClient", "SyncHandle", "connect_sync"]


@contextlib.contextmanager
def connect_sync(
    address: str | None = None, token: str | None = None, *, name: str | None = None, insecure: bool | None = None
) -> Iterator[SyncClient]:
    """`connect` for code that is not async; inside the `with`, it is the current client of this thread
    (client/current.py): tasks' `submit`/`map` use it."""
    with open_blocking(address, token, name=name, insecure=insecure) as client, current.using(client):
        yield client

"""Waiting that rides through a broker restart.

A broker restart is safe for workers (they re-attach); it should be for a person waiting too. When the
connection is lost during an idempotent step (waiting, reading a result), the step is run again on a new
connection, with backoff (client/backoff.py), for up to RECONNECT_FOR_S; one line on stderr says what is
going on. A submit is never repeated this way: it is not idempotent.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from gridd.client.api import Client
from gridd.client.backoff import Backoff
from gridd.protocol.errors import ConnectionLost

T = TypeVar("T")

RECONNECT_FOR_S = 300.0
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0


async def through_restarts(
    client: Client, reconnect: Callable[[], AbstractAsyncContextManager[Client]], step: Callable[[Client], Awaitable[T]]
) -> T:
    """`step(client)`, and if the broker goes away meanwhile, `step` on a new connection (`reconnect()`,
    made as the first was) once it is back. Past RECONNECT_FOR_S since the loss: the last ConnectionLost."""
    try:
        return await step(client)
    except ConnectionLost as exc:
        print(f"gridd: {exc}; waiting for the broker to come back", file=sys.stderr, flush=True)
        lost = exc
    backoff = Backoff(BACKOFF_FIRST_S, BACKOFF_MAX_S, give_up_after_s=RECONNECT_FOR_S)
    while await backoff.wait():
        try:
            async with reconnect() as again:
                return await step(again)
        except ConnectionLost as exc:
            lost = exc
    raise lost

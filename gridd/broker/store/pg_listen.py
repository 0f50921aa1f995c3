"""What other brokers on the same PostgreSQL database changed, as they commit it: LISTEN on the channel that
pg_store's transactions NOTIFY (changes.py encodes the payloads).

Rules: PostgreSQL delivers a notification only if its transaction commits, in commit order, to every
connection listening at that moment. A broker skips its own (sent by one of its store's connections, known by
their backend pids). While the listening connection is down, notifications are lost: after each (re)connect,
LISTEN comes first, then `resync` (the broker recounts its jobs from the store), so that nothing committed
meanwhile is missed; another broker's change committed between the two is counted twice until the next
resync (ledger.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container

import anyio
import psycopg
import structlog

from gridd.broker.store.changes import decode
from gridd.broker.store.interface import Announced
from gridd.protocol.errors import StorageFailed

log = structlog.get_logger()

CHANNEL = "gridd_changes"
RETRY_S = (0.1, 5.0)  # reconnect backoff: first, most


async def follow(
    url: str,
    own: Callable[[], Container[int]],
    deliver: Callable[[Announced], Awaitable[None]],
    resync: Callable[[], Awaitable[None]],
) -> None:
    """Until cancelled: deliver each change other brokers commit; reconnect with backoff when the link drops."""
    delay = RETRY_S[0]
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=5) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                await resync()
                log.info("store.following_peers", channel=CHANNEL)
                delay = RETRY_S[0]
                async for note in conn.notifies():
                    if note.pid in own():
                        continue
                    try:
                        announced = decode(note.payload)
                    except ValueError as exc:  # a payload we cannot read: another version's, or not ours
                        log.warning("store.peer_change_unreadable", error=str(exc), pid=note.pid)
                        continue
                    await deliver(announced)
        except (psycopg.Error, StorageFailed) as exc:  # StorageFailed: the resync's read, the database gone
            log.warning("store.peers_unreachable", error=str(exc).strip().splitlines()[0], retry_in_s=delay)
        await anyio.sleep(delay)
        delay = min(delay * 2, RETRY_S[1])

"""Group commit on PostgreSQL: the store's calls, batched into one transaction on one connection, run in a
thread (psycopg's blocking connection; the use cases are plain functions of their transaction).

Rules, as SQLite's (commit.py): one batch at a time on the connection, each a whole transaction; calls made
while a batch commits queue up for the next one; each call runs under a savepoint, so one that fails is
undone alone. A call returns only after COMMIT; a batch with a durable call commits with
`synchronous_commit` on (PostgreSQL's own WAL flush, which it shares between the transactions of every
broker that commit together), one without turns it off for that transaction (a lease lost with the
database's power is granted again). What the calls announce to the other brokers (pg_store.announce, the
last thing a call does, so a call undone announced nothing) is NOTIFYed in the COMMIT's round trip.

Several brokers share the database: their transactions run side by side, at READ COMMITTED. A use case that
reads rows to decide what it writes locks them (sql.FOR_UPDATE), leasing skips rows another broker is
leasing (sql.SKIP_LOCKED), and every transition is a conditional UPDATE. Two transactions that still
collide (a deadlock, or a unique key both insert) fail one statement: that call's savepoint is rolled back
and the call runs again, up to CALL_TRIES times.

The connection may go away (a restart, a failover to a new primary: a multi-host URL with
`target_session_attrs=read-write` finds it). A batch that lost it before COMMIT was sent changed nothing: it
runs again on a new connection, tried for RECONNECT_FOR_S. One that lost it during COMMIT may or may not
have committed: its calls are refused (StorageFailed, saying so), never run twice.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import psycopg
import psycopg.errors
import structlog

from gridd.broker.observe import Observer
from gridd.broker.store.call_thread import CallThread
from gridd.broker.store.handoff import hand_on
from gridd.broker.store.pg_listen import CHANNEL
from gridd.broker.store.pg_tx import PgTx
from gridd.broker.store.sql import Tx
from gridd.protocol.errors import StorageFailed

T = TypeVar("T")

log = structlog.get_logger()

MAX_BATCH_CALLS = 256
CALL_TRIES = 8  # a call that collided with another broker's transaction runs again, this many times at most
RECONNECT_FOR_S = 30.0  # a lost connection is sought again this long before calls are refused
CONNECT_TIMEOUT_S = 5

# Errors that say "run it again": the statement lost a race with another transaction, nothing of it stayed
# (a row another broker inserted or removed meanwhile: run again, the call sees it and decides anew).
_COLLISIONS = (
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
    psycopg.errors.UniqueViolation,
    psycopg.errors.ForeignKeyViolation,
)


@dataclass(eq=False, slots=True)
class _Call:
    fn: Callable[[Tx], Any]
    durable: bool
    woken: anyio.Event = field(default_factory=anyio.Event)  # committed, or its turn to lead (`leads`)
    leads: bool = False
    result: Any = None
    error: BaseException | None = None


class _Lost(Exception):
    """The connection went away; `committing`: while COMMIT was under way (its outcome unknown)."""

    def __init__(self, cause: BaseException, *, committing: bool) -> None:
        super().__init__(str(cause))
        self.committing = committing


class PgGroupCommit:
    """Runs store calls in batches on one PostgreSQL connection, opened (and opened again) from `url`."""

    def __init__(self, url: str, observer: Observer | None = None, conn: psycopg.Connection[Any] | None = None) -> None:
        self.url = url
        self._observer = observer or Observer()
        self._conn = conn
        # The backend pids of every connection this store committed through: notifications from them are
        # its own (pg_listen.py).
        self._pids: set[int] = set() if conn is None else {conn.info.backend_pid}
        self._database_thread = CallThread("gridd-commit")  # one batch's SQL at a time
        self._queued: list[_Call] = []
        self._leading = False

    async def run(self, fn: Callable[[Tx], T], *, durable: bool) -> T:
        """Run one use case in the next group commit; returns after COMMIT. Not cancellable midway, on
        purpose: a transaction always ends before its caller hears of it."""
        call = _Call(fn, durable)
        self._queued.append(call)
        with anyio.CancelScope(shield=True):
            if not self._leading:
                self._leading = True
                await anyio.lowlevel.checkpoint()  # calls from messages read in the same turn join this batch
                await self._commit_next()
            else:
                await call.woken.wait()
                if call.leads:
                    await self._commit_next()
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[no-any-return]

    async def _commit_next(self) -> None:
        """Commit the next batch (the leader's own call is its first), then hand the lead to the first call
        still queued: each caller goes on as soon as its own batch has committed, in commit order."""
        batch, self._queued = self._queued[:MAX_BATCH_CALLS], self._queued[MAX_BATCH_CALLS:]
        started = time.perf_counter()
        try:
            await self._database_thread.run(functools.partial(self._run_batch, batch))
        except BaseException as exc:  # a bug of ours: every caller of the batch hears of it
            for call in batch:
                call.error = call.error or exc
            raise
        finally:
            self._observer.committed(len(batch), time.perf_counter() - started, any(call.durable for call in batch))
            self._leading = hand_on(self._queued, batch)

    def own_pids(self) -> set[int]:
        return self._pids

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ---- in the thread ---------------------------------------------------------------------------------------

    def _run_batch(self, batch: list[_Call]) -> None:
        """The batch's transaction, run again on a new connection if the old one went away before COMMIT."""
        give_up = time.monotonic() + RECONNECT_FOR_S
        delay = 0.05
        while True:
            try:
                self._transaction(self._connection(), batch)
                return
            except _Lost as lost:
                self.close()
                if lost.committing:
                    error = StorageFailed(
                        f"the database went away while committing ({lost}); the request may or may not have"
                        " been recorded: look before sending it again"
                    )
                    log.error("store.commit_outcome_unknown", error=str(lost), calls=len(batch))
                    _fail(batch, error)
                    return
                if time.monotonic() + delay > give_up:
                    log.error("store.database_unreachable", error=str(lost), for_s=RECONNECT_FOR_S)
                    _fail(batch, StorageFailed(f"the broker cannot reach its database: {lost}"))
                    return
                log.warning("store.database_lost", error=str(lost), retry_in_s=delay)
                time.sleep(delay)  # in the store's own thread: the event loop goes on
                delay = min(delay * 2, 2.0)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = connect(self.url)
                self._pids.add(self._conn.info.backend_pid)
            except psycopg.OperationalError as exc:
                raise _Lost(exc, committing=False) from exc
        return self._conn

    def _transaction(self, conn: psycopg.Connection[Any], batch: list[_Call]) -> None:
        """BEGIN, each call under a savepoint, COMMIT: n + 1 round trips for n calls (the statements that
        open and close savepoints ride together)."""
        tx = PgTx(conn)
        committing = False
        try:
            durable = any(call.durable for call in batch)
            conn.execute(_BEGIN_DURABLE if durable else _BEGIN)
            for number, call in enumerate(batch, start=1):
                call.result, call.error = None, None
                _run_call(conn, tx, call)
                if number < len(batch):
                    conn.execute(b"RELEASE call; SAVEPOINT call")  # the next call's, after this one's work
            committing = True
            conn.execute(_notify_and_commit(tx.notices))
        except psycopg.OperationalError as exc:
            if conn.broken or conn.closed:
                raise _Lost(exc, committing=committing) from exc
            _rollback(conn)
            _fail(batch, StorageFailed(f"the broker could not commit: {exc}"))
        except psycopg.Error as exc:
            _rollback(conn)
            _fail(batch, StorageFailed(f"the broker could not commit: {exc}"))


_BEGIN_DURABLE = b"BEGIN; SAVEPOINT call"
_BEGIN = b"BEGIN; SET LOCAL synchronous_commit = off; SAVEPOINT call"


def _run_call(conn: psycopg.Connection[Any], tx: PgTx, call: _Call) -> None:
    """One call under the savepoint open for it (left open: undone if the call failed), run again while it
    collides with another broker's transaction."""
    for tries in range(1, CALL_TRIES + 1):
        try:
            call.result = call.fn(tx)
            return
        except _COLLISIONS as exc:
            conn.execute(b"ROLLBACK TO call")  # the savepoint stays, for the next try
            if tries == CALL_TRIES:
                call.error = StorageFailed(f"the broker could not commit: {exc}")
        except psycopg.OperationalError:
            raise  # the connection: the whole batch's concern
        except Exception as exc:
            conn.execute(b"ROLLBACK TO call")
            call.error = StorageFailed(f"the broker could not commit: {exc}") if isinstance(exc, psycopg.Error) else exc
            return


def _notify_and_commit(payloads: list[str]) -> bytes:
    """COMMIT, after a NOTIFY of each payload: in the one round trip of the COMMIT (a statement of their own
    cost each batch one more). The payloads are base64, checked so as announced (pg_store.py): literals."""
    return "".join(f"NOTIFY {CHANNEL}, '{p}'; " for p in payloads).encode() + b"COMMIT"


def _fail(batch: list[_Call], error: StorageFailed) -> None:
    for call in batch:
        call.result, call.error = None, error


def _rollback(conn: psycopg.Connection[Any]) -> None:
    try:
        conn.execute("ROLLBACK")
    except psycopg.Error:
        conn.close()


def connect(url: str) -> psycopg.Connection[Any]:
    """A connection in autocommit mode (the group commit writes BEGIN and COMMIT itself)."""
    return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)

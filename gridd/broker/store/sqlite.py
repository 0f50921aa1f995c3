"""The store on SQLite: the broker's use cases (interface.Store), each one transaction in one group commit.

The table below is the whole of it: each use case is a function of the connection, in the module named
for its use case, made an async method by database.use_case, which says whether its commit waits for
fsync and whether it may read right on the event loop. Transitions are conditional UPDATEs (`WHERE id = ?
AND lease = ? AND state = ?`) that transitions.py decides. The database is one file in WAL mode.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

import gridd.broker.store.blobs as blobs
import gridd.broker.store.bundles as bundles
import gridd.broker.store.control as control
import gridd.broker.store.expiry as expiry
import gridd.broker.store.gangs as gangs
import gridd.broker.store.keys as keys
import gridd.broker.store.lanes as lanes
import gridd.broker.store.leasing as leasing
import gridd.broker.store.reads as reads
import gridd.broker.store.retention as retention
import gridd.broker.store.schedules as schedules
import gridd.broker.store.start_times as start_times
import gridd.broker.store.submit as submit
import gridd.broker.store.tokens as tokens
import gridd.broker.store.why as why
from gridd.broker.observe import Observer
from gridd.broker.schema import migrate
from gridd.broker.store.database import Database, use_case
from gridd.broker.store.interface import Store
from gridd.protocol.errors import StorageFailed


class SQLiteStore(Database):
    """Jobs, leases, attempts, outputs, tokens, blobs and bundles in one SQLite file (WAL)."""

    # ---- jobs in, and leasing (a lease is not fsynced: one lost with the power is granted again) ------------
    submit_jobs = use_case(submit.submit_jobs, durable=True)
    submit_keyed = use_case(keys.submit_keyed, durable=True)
    lease_jobs = use_case(leasing.lease_jobs, durable=False, then=leasing.observed)
    renew_leases = use_case(leasing.renew_leases, durable=False)
    # A queued gang read on the event loop: seen early, it is only offered to lease_gangs, which checks again.
    queued_gangs = use_case(gangs.queued_gangs, durable=False, read_now="always")
    lease_gangs = use_case(gangs.lease_gangs, durable=False, then=gangs.observed)
    next_eligible_ms = use_case(leasing.next_eligible_ms, durable=False)
    promote_due = use_case(start_times.promote_due, durable=False)  # one lost with the power: redone at start
    extend_running_leases = use_case(leasing.extend_running_leases, durable=False)
    known_lanes = use_case(lanes.known_lanes, durable=False)
    drop_lanes = use_case(lanes.drop_lanes, durable=False)
    restore_lanes = use_case(lanes.restore_lanes, durable=True)

    # ---- attempts end ----------------------------------------------------------------------------------------
    complete_jobs = use_case(gangs.complete_jobs, durable=True)  # completion.py's, a gang member's kept first
    expire_leases = use_case(expiry.expire_leases, durable=True)
    attach_worker = use_case(expiry.attach_worker, durable=True)
    return_leases = use_case(expiry.return_leases, durable=True)

    # ---- control ---------------------------------------------------------------------------------------------
    control_jobs = use_case(control.control_jobs, durable=True)
    expand = use_case(control.expand, durable=False)
    purge_finished = use_case(retention.purge_finished, durable=True)
    forget_keys = use_case(keys.forget_keys, durable=False)  # a key lost with the power is removed again

    # ---- reads (a few jobs by key: on the event loop) ---------------------------------------------------------
    get_job = use_case(reads.get_job, durable=False)
    get_jobs = use_case(reads.get_jobs, durable=False, read_now="few")
    list_jobs = use_case(reads.list_jobs, durable=False)
    job_facts = use_case(why.job_facts, durable=False)
    read_output = use_case(reads.read_output, durable=False)
    read_results = use_case(blobs.read_results, durable=False, read_now="few")
    report = use_case(reads.report, durable=False)
    foreign_job = use_case(reads.foreign_job, durable=False)
    job_inputs = use_case(reads.job_inputs, durable=False)
    count_by_queue = use_case(reads.count_by_queue, durable=False)

    # ---- role tokens (their use is not fsynced: a lost one costs a minute) --------------------------------------
    create_token = use_case(tokens.create_token, durable=True)
    list_tokens = use_case(tokens.list_tokens, durable=False)
    revoke_token = use_case(tokens.revoke_token, durable=True)
    find_token = use_case(tokens.find_token, durable=False, read_now="always")  # one row by a unique key
    touch_tokens = use_case(tokens.touch_tokens, durable=False)

    # ---- blobs and bundles ------------------------------------------------------------------------------------
    # A piece of a blob is not fsynced: a submit naming the blob commits later with fsync, and WAL keeps
    # commits in order.
    put_blob = use_case(blobs.put_blob, durable=False)
    get_blob = use_case(blobs.get_blob, durable=False)
    push_bundle = use_case(bundles.push_bundle, durable=True)
    list_bundles = use_case(bundles.list_bundles, durable=False)
    get_bundle = use_case(bundles.get_bundle, durable=False)

    # ---- periodic schedules (a firing submits jobs: durable) ---------------------------------------------------
    add_schedule = use_case(schedules.add_schedule, durable=True)
    list_schedules = use_case(schedules.list_schedules, durable=False)
    get_schedule = use_case(schedules.get_schedule, durable=False)
    change_schedule = use_case(schedules.change_schedule, durable=True)
    due_schedules = use_case(schedules.due_schedules, durable=False)
    next_slot_ms = use_case(schedules.next_slot_ms, durable=False)
    fire_schedules = use_case(schedules.fire_schedules, durable=True)


if TYPE_CHECKING:

    def _implements(store: SQLiteStore) -> Store:
        return store  # mypy checks here that the SQLite store has every use case of the interface, as typed


@asynccontextmanager
async def open_store(path: Path, observer: Observer | None = None) -> AsyncIterator[SQLiteStore]:
    """Open (creating and migrating if needed) the database at `path`, in WAL mode, fsync on commit."""
    conn = await anyio.to_thread.run_sync(_connect, path)
    reader: sqlite3.Connection | None = None
    try:
        reader = await anyio.to_thread.run_sync(_connect_reader, path)
        yield SQLiteStore(conn, reader=reader, observer=observer)
    finally:
        with anyio.CancelScope(shield=True):
            if reader is not None:
                reader.close()
            await anyio.to_thread.run_sync(conn.close)


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: every transaction is an explicit BEGIN IMMEDIATE ... COMMIT (GroupCommit).
        # Used from one thread at a time (the store's limiter), not always the same one.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit survives a power cut, not only a killed broker; batching pays for it.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA busy_timeout = 5000")
        migrate(conn)
    except (OSError, sqlite3.Error) as exc:
        raise StorageFailed(f"cannot open the database {path}: {exc}") from exc
    return conn


def _connect_reader(path: Path) -> sqlite3.Connection:
    """A second connection, read-only, for the small reads made on the event loop (database.py: read_now)."""
    try:
        uri = path.resolve().as_uri() + "?mode=ro"  # as_uri escapes what a URI may not hold ("?", "#", "%")
        reader = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        reader.execute("PRAGMA query_only = 1")
        reader.execute("PRAGMA busy_timeout = 1000")
    except sqlite3.Error as exc:
        raise StorageFailed(f"cannot open the database {path} for reading: {exc}") from exc
    return reader

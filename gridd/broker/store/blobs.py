"""The store's task payloads: content-addressed blobs and task results. Part of the store, run on its
database thread inside the store's transactions.

A blob arrives in pieces, in order (`have` says how far it got, so an upload resumes where it broke
off); once complete, its content is checked against its id, and a blob that does not hash to its id
is discarded. Blobs are kept in rows of at most BLOB_CHUNK_BYTES, so no row nears SQLite's limits.

Nobody is trusted before completion: a sha256 names one content and so one size, and until the
content is all there only its hash can tell a true claim from a false one. So a piece that names
another size than a partial blob's replaces that partial (the claim at hand starts over; the first
claimant's size never blocks a later, true one), a claim of 0 bytes is checked at once, and a partial
blob nobody wrote to for PARTIAL_BLOB_TTL_MS is dropped by the next upload of any blob (lazily: only
an upload adds partial bytes, so none linger past an hour of quiet plus one upload).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgspec

from gridd.broker.store.refs import parse_job_id
from gridd.broker.store.sql import FOR_SHARE, FOR_UPDATE, Tx, states
from gridd.protocol.errors import InvalidRequest, UnknownBlob, UnknownJob
from gridd.protocol.messages import TaskError, TaskOutcome
from gridd.protocol.states import FINISHED, JobState

_FINISHED_SQL = states(JobState(state) for state in sorted(FINISHED))

_error_decoder = msgspec.msgpack.Decoder(TaskError)


PARTIAL_BLOB_TTL_MS = 60 * 60 * 1000  # a partial upload nobody wrote to for an hour is dropped


def put_blob(db: Tx, blob: str, size: int, offset: int, data: bytes, now_ms: int) -> tuple[int, bool]:
    """Keep one piece; returns the bytes held from the start, and False if the finished content did not
    hash to `blob` (then nothing of it is kept, and the upload must start again)."""
    _expire_partials(db, now_ms - PARTIAL_BLOB_TTL_MS)
    # Locked: another broker taking a piece of this blob at once waits, then goes on from what this one did.
    row = db.execute(f"SELECT size, have FROM blobs WHERE id = ?{FOR_UPDATE}", (blob,)).fetchone()  # noqa: S608
    if row is not None and row[0] != size and row[1] < row[0]:
        _drop(db, blob)  # two sizes for one sha256: at most one is true, and the partial proves nothing
        row = None
    if row is None:
        db.execute("INSERT INTO blobs (id, size, have, touched_ms) VALUES (?, ?, 0, ?)", (blob, size, now_ms))
        row = (size, 0)
    known, have = row
    if known != size:  # complete, so checked against its id: the claim is what is wrong
        raise InvalidRequest(f"blob {blob[:12]} has {known} bytes, not {size}")
    if have == size and size > 0:
        return have, True  # complete already: the sender may stop
    if offset != have:
        return have, True  # out of order: the reply tells the sender where to go on from
    if offset + len(data) > size:
        raise InvalidRequest(f"a piece of blob {blob[:12]} runs past its size ({offset + len(data)} > {size})")
    if data:
        db.execute('INSERT INTO blob_chunks (blob, "offset", data) VALUES (?, ?, ?)', (blob, offset, data))
    have += len(data)
    if have == size and _content_hash(db, blob) != blob:
        _drop(db, blob)
        return 0, False
    if data:
        db.execute("UPDATE blobs SET have = ?, touched_ms = ? WHERE id = ?", (have, now_ms, blob))
    return have, True


def get_blob(db: Tx, blob: str, offset: int) -> tuple[int, bytes]:
    """The blob's size and the rest of the stored piece that holds `offset` (empty at the end)."""
    size = blob_size(db, blob)
    if offset >= size:
        return size, b""
    row = db.execute(
        'SELECT "offset", data FROM blob_chunks WHERE blob = ? AND "offset" <= ? ORDER BY "offset" DESC LIMIT 1',
        (blob, offset),
    ).fetchone()
    return size, bytes(row[1][offset - row[0] :])


def blob_size(db: Tx, blob: str) -> int:
    """The size of a complete blob; UnknownBlob if there is none (or it is still arriving)."""
    row = db.execute(f"SELECT size, have FROM blobs WHERE id = ?{FOR_SHARE}", (blob,)).fetchone()  # noqa: S608
    if row is None or row[0] != row[1]:
        raise UnknownBlob(f"no complete blob has id {blob[:12]}…; upload it first")
    return int(row[0])


def blob_head(db: Tx, blob: str, length: int) -> bytes:
    """The first `length` bytes of a complete blob (fewer if it is shorter)."""
    blob_size(db, blob)
    row = db.execute(
        'SELECT substr(data, 1, CAST(? AS INTEGER)) FROM blob_chunks WHERE blob = ? AND "offset" = 0', (length, blob)
    )
    found = row.fetchone()
    return bytes(found[0]) if found else b""


def read_results(db: Tx, job_ids: Sequence[str], max_bytes: int, *, finished_only: bool = False) -> list[TaskOutcome]:
    """Task outcomes for the named jobs (`finished_only`: those that have finished), in order, stopping
    (after at least one) before `max_bytes`."""
    keys = [parse_job_id(j) for j in job_ids]
    ids = db.ids(keys)
    sql = (
        "SELECT j.id, j.state, j.exit_code, j.reason, r.value, r.blob, r.error FROM jobs j"
        " LEFT JOIN results r ON r.job_id = j.id WHERE j.id IN (SELECT value FROM json_each(?))"
    )
    if finished_only:
        # A long poll asks about a window of up to a thousand jobs of which few have finished: rows for
        # the others would only be built to be dropped, so they are left in SQLite (and counted).
        rows = db.execute(sql + f" AND j.state IN {_FINISHED_SQL}", (ids,)).fetchall()
        known = db.execute("SELECT COUNT(*) FROM jobs WHERE id IN (SELECT value FROM json_each(?))", (ids,))
        if known.fetchone()[0] != len(set(keys)):
            _refuse_unknown(db, job_ids, keys)
    else:
        rows = db.execute(sql, (ids,)).fetchall()
    found = {r[0]: r for r in rows}
    outcomes: list[TaskOutcome] = []
    size = 0
    for job_id, key in zip(job_ids, keys, strict=True):
        row = found.get(key)
        if row is None:
            if finished_only:
                continue
            raise UnknownJob(f"no job has id {job_id!r}")
        value = bytes(row[4] or b"")
        size += len(value) + 256
        if outcomes and size > max_bytes:
            break
        error = _error_decoder.decode(row[6]) if row[6] else None
        outcomes.append(
            TaskOutcome(
                job_id=job_id,
                state=row[1],
                exit_code=row[2],
                reason=row[3],
                value=value,
                value_blob=row[5],
                error=error,
            )
        )
    return outcomes


def _refuse_unknown(db: Tx, job_ids: Sequence[str], keys: Sequence[int]) -> None:
    found = {
        r[0] for r in db.execute("SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(?))", (db.ids(keys),))
    }
    missing = next(job_id for job_id, key in zip(job_ids, keys, strict=True) if key not in found)
    raise UnknownJob(f"no job has id {missing!r}")


def _expire_partials(db: Tx, before_ms: int) -> None:
    """Drop the blobs still arriving that nobody wrote to since `before_ms` (blobs_partial holds them)."""
    db.execute(
        "DELETE FROM blob_chunks WHERE blob IN (SELECT id FROM blobs WHERE have < size AND touched_ms < ?)",
        (before_ms,),
    )
    db.execute("DELETE FROM blobs WHERE have < size AND touched_ms < ?", (before_ms,))


def _drop(db: Tx, blob: str) -> None:
    db.execute("DELETE FROM blob_chunks WHERE blob = ?", (blob,))
    db.execute("DELETE FROM blobs WHERE id = ?", (blob,))


def _content_hash(db: Tx, blob: str) -> str:
    digest = hashlib.sha256()
    for (data,) in db.execute('SELECT data FROM blob_chunks WHERE blob = ? ORDER BY "offset"', (blob,)):
        digest.update(data)
    return digest.hexdigest()

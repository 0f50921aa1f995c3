"""Retention: finished jobs older than a cut-off are removed with everything only they refer to. Part of the
store, run on its database thread inside the store's transactions.

Rules: one call removes at most `max_jobs` jobs (those that finished first), so a purge of millions holds
the writer for one short transaction at a time; the caller calls again while a batch comes back full.
What goes with a job: its attempts, outputs and result, its dependency rows both ways (a job that waited
for it was settled when it finished: met if it succeeded, cancelled if not), its group once no job is left
in it, and each blob it referred to (task arguments, a result value) that no other job, result or bundle
version refers to. A bundle's blobs stay while any version names them. The largest id ever given is
kept in `meta`, so a restart after the newest jobs were purged never gives an id out twice.
"""

from __future__ import annotations

from gridd.broker.schema import FINISHED_WHERE
from gridd.broker.store.sql import FOR_UPDATE, SKIP_LOCKED, TEXTS, Fragment, Tx, indexed_by

LAST_JOB_ID = "last_job_id"
# Word for word the WHERE of the jobs_finished index (schema.py), so that it may be used; and used it is: read
# through the index on the state, every finished job was read and sorted at each batch (20-26 ms a batch with
# 200,000 finished, 0.01-0.3 ms through jobs_finished).
_FINISHED = FINISHED_WHERE
_OLDEST_FINISHED_SQL = (
    f"SELECT id, queue, state, group_id, args_blob FROM jobs{indexed_by('jobs_finished')}"  # noqa: S608
    f" WHERE {_FINISHED} AND finished_ms < ? ORDER BY finished_ms LIMIT ?{SKIP_LOCKED}"
)
# Whether a bundle version's manifest (bytes) holds the blob's id.
_IN_MANIFEST = Fragment("instr(manifest, CAST(? AS BLOB)) > 0", "position(convert_to(?, 'UTF8') in manifest) > 0")


def purge_finished(db: Tx, cutoff_ms: int, max_jobs: int) -> list[tuple[str, str, str]]:
    """Remove up to `max_jobs` jobs that finished before `cutoff_ms`; returns (id, queue, state) of each.

    Brokers purging one database at once each take other jobs (those another is purging are locked, and
    skipped), and a group or blob goes only after its row is locked and no job is seen to name it any more
    (a job committed meanwhile by another broker is seen then)."""
    rows = db.execute(_OLDEST_FINISHED_SQL, (cutoff_ms, max_jobs)).fetchall()
    if not rows:
        return []
    ids = db.ids(r[0] for r in rows)
    blobs = {r[4] for r in rows if r[4]}
    blobs.update(
        r[0]
        for r in db.execute(
            "SELECT blob FROM results WHERE job_id IN (SELECT value FROM json_each(?)) AND blob IS NOT NULL", (ids,)
        )
    )
    for sql in (
        "DELETE FROM attempts WHERE job_id IN (SELECT value FROM json_each(?))",
        "DELETE FROM outputs WHERE job_id IN (SELECT value FROM json_each(?))",
        "DELETE FROM results WHERE job_id IN (SELECT value FROM json_each(?))",
        "DELETE FROM deps WHERE job_id IN (SELECT value FROM json_each(?))",
        "DELETE FROM deps WHERE dep_id IN (SELECT value FROM json_each(?))",
        "DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?))",
    ):
        db.execute(sql, (ids,))
    groups = db.ids(sorted({r[3] for r in rows if r[3] is not None}))
    lock_groups = f"SELECT id FROM groups WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id{FOR_UPDATE}"  # noqa: S608
    db.execute(lock_groups, (groups,))
    db.execute(
        "DELETE FROM groups WHERE id IN (SELECT value FROM json_each(?))"
        " AND NOT EXISTS (SELECT 1 FROM jobs WHERE group_id = groups.id)",
        (groups,),
    )
    lock_blobs = f"SELECT id FROM blobs WHERE id IN ({TEXTS}) ORDER BY id{FOR_UPDATE}"  # noqa: S608
    locked = db.execute(lock_blobs, (db.texts(blobs),))
    for (blob,) in locked.fetchall():
        if not _referenced(db, blob):
            db.execute("DELETE FROM blob_chunks WHERE blob = ?", (blob,))
            db.execute("DELETE FROM blobs WHERE id = ?", (blob,))
    # The largest id given never goes down (on PostgreSQL submit counts ids in this row: never lower it).
    # Last, so that the row, which every submit of every broker writes, is held locked the shortest time.
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE meta.value < excluded.value",
        (LAST_JOB_ID, max(r[0] for r in rows)),
    )
    return [(str(r[0]), r[1], r[2]) for r in rows]


def _referenced(db: Tx, blob: str) -> bool:
    """Whether a job that is left, a result or a bundle version still names `blob`."""
    found = db.execute(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE args_blob = ?)"  # noqa: S608 - constant text and a Fragment
        " OR EXISTS (SELECT 1 FROM results WHERE blob = ?)"
        f" OR EXISTS (SELECT 1 FROM bundles WHERE {_IN_MANIFEST})",
        (blob, blob, blob),
    ).fetchone()
    return bool(found[0])

"""Idempotent submit: a submit under a key, and the expiry of keys. Part of the store.

Rules: a key is its owner's (the credential's name): two owners' keys never meet, and none can learn
whether another used a key. The key is checked and kept in the same transaction as the jobs it makes,
so a submit that committed always left its key, and a key never names jobs that were not made. One row
per request of the submit (`part`: a large submit travels in chunks); the ids a request made are
consecutive (submit.py gives them in order), kept as the first and how many. A key past its expiry is
as good as gone: the next submit under it removes it and makes jobs; retention removes the rest.
Two brokers submitting under one key at once both make jobs, but only one key row can be inserted: the
other's insert breaks the unique key, its transaction is rolled back and run again (pg_commit), and then
finds the first one's key, so one set of jobs is made.
"""

from __future__ import annotations

from collections.abc import Sequence

import gridd.broker.store.submit as submit
from gridd.broker.store.interface import KeyedSubmit, SubmitKey
from gridd.broker.store.refs import group_name, parse_ref
from gridd.broker.store.sql import Tx, rows
from gridd.protocol.errors import KeyConflict
from gridd.protocol.messages import JobSpec

_FIND = "SELECT digest, first_job, jobs, group_id, expires_ms FROM submit_keys WHERE owner = ? AND key = ? AND part = ?"


def submit_keyed(
    db: Tx,
    specs: Sequence[JobSpec],
    now_ms: int,
    key: SubmitKey,
    *,
    after: Sequence[str] = (),
    new_group: bool = False,
    group: str | None = None,
    max_running: int | None = None,
    owner: str = "admin",
) -> KeyedSubmit:
    found = rows(db, _FIND, (owner, key.name, key.part))
    if found and found[0][4] <= now_ms:  # expired: the key may make jobs again, all its parts afresh
        db.execute("DELETE FROM submit_keys WHERE owner = ? AND key = ?", (owner, key.name))
        found = []
    if found:
        digest, first_job, count, group_id, _ = found[0]
        ids = [str(first_job + i) for i in range(count)]
        if digest != key.digest:
            made = _made(first_job, count, group_id)
            raise KeyConflict(f"key {key.name} was used for {made} with a different request; nothing was submitted")
        return KeyedSubmit(job_ids=ids, group=group_name(group_id), replayed=True)
    expires_ms = now_ms + key.ttl_ms
    if key.part > 0:  # a later chunk: kept as long as the first, and only for the group the first made
        first = rows(db, _FIND, (owner, key.name, 0))
        if first:
            expires_ms = first[0][4]
            if group_name(first[0][3]) != group:
                made, adds = _made(first[0][1], first[0][2], first[0][3]), f"group {group}" if group else "no group"
                raise KeyConflict(
                    f"key {key.name} was used for {made} and this request adds to {adds}; nothing was submitted"
                )
    changed, made_group = submit.submit_jobs(
        db, specs, now_ms, after=after, new_group=new_group, group=group, max_running=max_running, owner=owner
    )
    db.execute(
        "INSERT INTO submit_keys (owner, key, part, digest, first_job, jobs, group_id, created_ms, expires_ms)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            owner,
            key.name,
            key.part,
            key.digest,
            int(changed[0].job_id),
            len(changed),
            parse_ref(made_group)[1] if made_group is not None else None,
            now_ms,
            expires_ms,
        ),
    )
    return KeyedSubmit(job_ids=[t.job_id for t in changed], group=made_group, replayed=False, changed=changed)


def _made(first_job: int, count: int, group_id: int | None) -> str:
    """What a key made, for a person: "group g3", "job 17", "jobs 17-19"."""
    if group_id is not None:
        return f"group {group_name(group_id)}"
    return f"job {first_job}" if count == 1 else f"jobs {first_job}-{first_job + count - 1}"


def forget_keys(db: Tx, now_ms: int, max_keys: int) -> int:
    """Remove up to `max_keys` keys expired by `now_ms` (those that expired first); returns how many."""
    cursor = db.execute(
        "DELETE FROM submit_keys WHERE (owner, key, part) IN"
        " (SELECT owner, key, part FROM submit_keys WHERE expires_ms <= ? ORDER BY expires_ms LIMIT ?)",
        (now_ms, max_keys),
    )
    return cursor.rowcount

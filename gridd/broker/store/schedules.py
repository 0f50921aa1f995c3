"""Periodic schedules: kept, listed, changed, and their slots fired. Part of the store.

Rules: a slot fires in one transaction with the job it submits: a conditional UPDATE moves the schedule
from the slot due to the next (`WHERE name = ? AND next_slot_ms = <due>`), and only the caller whose
update found the row submits, through submit.submit_jobs (so dependencies, lanes and events apply as to
any job). Two brokers on one store, or a broker restarted in the middle, thus fire each slot once. A
firing whose job cannot be submitted (its bundle was removed) still moves on: that slot is skipped and
said so, rather than retried forever. cron text and time zones are the broker's (gridd/cron.py): this
module only keeps them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

import gridd.broker.store.submit as submit
from gridd.broker.store.schedule_rows import DueSchedule, Fired, Firing
from gridd.broker.store.sql import Tx
from gridd.protocol.errors import InvalidRequest, OperationRefused
from gridd.protocol.messages import JobSpec, ScheduleRun, ScheduleView

RUNS_KEPT = 100  # of each schedule, the latest (`schedule show` lists them)

_INSERTED = "name, cron, tz, catch_up, spec, next_slot_ms, owner, created_ms"
_COLUMNS = "name, cron, tz, catch_up, paused, next_slot_ms, last_fired_ms, owner, created_ms, spec"
_encoder = msgspec.msgpack.Encoder()
_spec_decoder = msgspec.msgpack.Decoder(JobSpec)


def add_schedule(
    db: Tx,
    name: str,
    cron: str,
    tz: str,
    catch_up: str,
    spec: JobSpec,
    next_slot_ms: int,
    owner: str,
    now_ms: int,
) -> ScheduleView:
    """Keep a new schedule; InvalidRequest if one has that name already."""
    if db.execute("SELECT 1 FROM schedules WHERE name = ?", (name,)).fetchone() is not None:
        raise InvalidRequest(f"a schedule named {name!r} exists already (gridd schedule remove {name} first)")
    insert = f"INSERT INTO schedules ({_INSERTED}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}"  # noqa: S608
    row = db.execute(insert, (name, cron, tz, catch_up, _encoder.encode(spec), next_slot_ms, owner, now_ms)).fetchone()
    return _view(row)


def list_schedules(db: Tx, owner: str | None) -> list[ScheduleView]:
    """Every schedule by name (`owner`: only that owner's)."""
    if owner is None:
        found = db.execute(f"SELECT {_COLUMNS} FROM schedules ORDER BY name")  # noqa: S608
    else:
        found = db.execute(f"SELECT {_COLUMNS} FROM schedules WHERE owner = ? ORDER BY name", (owner,))  # noqa: S608
    return [_view(r) for r in found]


def get_schedule(db: Tx, name: str, runs: int) -> tuple[ScheduleView, list[ScheduleRun]]:
    """The schedule and its latest `runs` runs, the latest first, each with its job's state now."""
    row = db.execute(f"SELECT id, {_COLUMNS} FROM schedules WHERE name = ?", (name,)).fetchone()  # noqa: S608
    if row is None:
        raise _unknown(name)
    found = db.execute(
        "SELECT r.slot_ms, r.job_id, j.state FROM schedule_runs r LEFT JOIN jobs j ON j.id = r.job_id"
        " WHERE r.schedule_id = ? ORDER BY r.slot_ms DESC LIMIT ?",
        (row[0], runs),
    ).fetchall()
    return _view(row[1:]), [ScheduleRun(slot_ms=s, job_id=str(j), state=st) for s, j, st in found]


def change_schedule(db: Tx, name: str, action: str, next_slot_ms: int | None) -> ScheduleView:
    """pause; resume from `next_slot_ms`; or remove (with its runs; its jobs stay)."""
    if action == "pause":
        row = db.execute(
            f"UPDATE schedules SET paused = 1 WHERE name = ? RETURNING {_COLUMNS}",  # noqa: S608
            (name,),
        ).fetchone()
    elif action == "resume":
        row = db.execute(
            f"UPDATE schedules SET paused = 0, next_slot_ms = ? WHERE name = ? RETURNING {_COLUMNS}",  # noqa: S608
            (next_slot_ms, name),
        ).fetchone()
    elif action == "remove":
        db.execute("DELETE FROM schedule_runs WHERE schedule_id IN (SELECT id FROM schedules WHERE name = ?)", (name,))
        row = db.execute(f"DELETE FROM schedules WHERE name = ? RETURNING {_COLUMNS}", (name,)).fetchone()  # noqa: S608
    else:
        raise InvalidRequest(f"a schedule is paused, resumed or removed, not {action!r}")
    if row is None:
        raise _unknown(name)
    return _view(row)


def due_schedules(db: Tx, now_ms: int, limit: int) -> list[DueSchedule]:
    """Up to `limit` running schedules whose next slot is at or before `now_ms`, the earliest first."""
    found = db.execute(
        "SELECT name, cron, tz, catch_up, next_slot_ms, spec FROM schedules"
        " WHERE paused = 0 AND next_slot_ms IS NOT NULL AND next_slot_ms <= ? ORDER BY next_slot_ms LIMIT ?",
        (now_ms, limit),
    ).fetchall()
    return [DueSchedule(n, c, tz, cu, due, _spec_decoder.decode(spec)) for n, c, tz, cu, due, spec in found]


def next_slot_ms(db: Tx) -> int | None:
    """The earliest next slot of the running schedules (None: none has one)."""
    row = db.execute("SELECT MIN(next_slot_ms) FROM schedules WHERE paused = 0 AND next_slot_ms IS NOT NULL").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def fire_schedules(db: Tx, firings: Sequence[Firing], now_ms: int) -> list[Fired]:
    """Each firing whose schedule is still at its `due_ms` (and running): move it on, and submit one job
    per slot, owned by the schedule's owner and naming it. The others (raced) are left as they are."""
    return [_fire(db, f, now_ms) for f in firings]


def _fire(db: Tx, f: Firing, now_ms: int) -> Fired:
    moved = db.execute(
        "UPDATE schedules SET next_slot_ms = ?, last_fired_ms = COALESCE(CAST(? AS BIGINT), last_fired_ms)"
        " WHERE name = ? AND next_slot_ms = ? AND paused = 0 RETURNING id, spec, owner",
        (f.next_ms, f.slots[-1] if f.slots else None, f.name, f.due_ms),
    ).fetchone()
    if moved is None:
        return Fired(f.name, raced=True)
    if not f.slots:
        return Fired(f.name)
    schedule_id, blob, owner = moved
    template = _spec_decoder.decode(blob)
    specs = [
        msgspec.structs.replace(template, schedule=f.name, env={**template.env, **slot_env(f.name, slot)})
        for slot in f.slots
    ]
    db.execute("SAVEPOINT fire_slots")  # a refused submit is undone alone: the schedule still moves on
    try:
        changed, _ = submit.submit_jobs(db, specs, now_ms, owner=owner)
    except OperationRefused as exc:
        db.execute("ROLLBACK TO fire_slots")
        db.execute("RELEASE fire_slots")
        return Fired(f.name, refused=str(exc))
    db.execute("RELEASE fire_slots")
    db.executemany(
        "INSERT INTO schedule_runs (schedule_id, slot_ms, job_id) VALUES (?, ?, ?)",
        [(schedule_id, slot, int(t.job_id)) for slot, t in zip(f.slots, changed, strict=True)],
    )
    db.execute(
        "DELETE FROM schedule_runs WHERE schedule_id = ? AND slot_ms <= (SELECT slot_ms FROM schedule_runs"
        " WHERE schedule_id = ? ORDER BY slot_ms DESC LIMIT 1 OFFSET ?)",
        (schedule_id, schedule_id, RUNS_KEPT),
    )
    return Fired(f.name, transitions=changed)


def slot_env(name: str, slot_ms: int) -> dict[str, str]:
    """What a scheduled job is told of its run: its schedule, and the slot it stands for (in UTC, ISO 8601),
    which is not when it runs: a slot caught up after downtime runs later than its time."""
    slot = datetime.fromtimestamp(slot_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"GRIDD_SCHEDULE": name, "GRIDD_SCHEDULE_SLOT": slot}


def _unknown(name: str) -> InvalidRequest:
    return InvalidRequest(f"no schedule is named {name!r} (gridd schedule list shows them)")


def _view(r: Any) -> ScheduleView:
    spec = _spec_decoder.decode(r[9])
    return ScheduleView(
        name=r[0],
        cron=r[1],
        tz=r[2],
        catch_up=r[3],
        paused=bool(r[4]),
        next_slot_ms=r[5],
        last_fired_ms=r[6],
        owner=r[7],
        created_ms=r[8],
        argv=spec.argv,
        queue=spec.queue,
        task=spec.task.name if spec.task is not None else None,
    )

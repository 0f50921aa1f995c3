"""`python -m benchmarks.pg_drivers [--runs N] [--quick] [--fsync on|off] [--no-save]`: psycopg 3 vs asyncpg.

Issue 19 picks the PostgreSQL driver by this microbenchmark. Both drivers run in the same process and the same
run, one after the other (the order alternates between runs), under anyio's asyncio backend as gridd does,
against one throwaway PostgreSQL (tests/pgserver.py: Debian's package, fsync on by default, as in production) on
127.0.0.1, each on a fresh database copied from one template holding a `jobs` table shaped like gridd's
(gridd/broker/schema.py) with PREFILL queued jobs. Each driver goes through its own pool (POOL connections),
one operation at a time, as one store call of the broker would:

- insert100: 100 jobs in one transaction, ids returned: the driver's batching (psycopg: executemany, which
  pipelines; asyncpg: fetchmany) and, as `insert100_unnest`, one INSERT ... SELECT FROM unnest(arrays);
- lease1 / lease32: UPDATE ... WHERE id IN (SELECT ... ORDER BY priority DESC, id LIMIT n FOR UPDATE SKIP
  LOCKED) RETURNING, one statement in its own transaction;
- complete32: 32 conditional UPDATEs (by id and lease token, RETURNING id) and 32 attempts rows in one
  transaction (psycopg: in a pipeline), and, as `complete32_unnest`, one UPDATE ... FROM unnest feeding the
  INSERT of the attempts rows through a CTE;
- read: one job by its key;
- notify: LISTEN on one connection, pg_notify on another (from the pool), time to the listener's wake-up.

Per operation: median and p99 latency, and the jobs/s one connection doing it back to back implies (batch /
median), and the CPU this process spent per operation (the driver's own cost, which the wall time of a
loaded machine hides). The table shows the medians over the runs. A capability check follows: a multi-host URL
with target_session_attrs=read-write, whose first host is down and second read-only, must reach the third,
directly and through the pool; once more with libpq's connect_timeout in the URL. `--fsync off` runs the
server without fsync, so that commits cost no disk flush and the drivers' differences show in wall time too.
One JSON line is appended to benchmarks/results.jsonl (scenario `pg-drivers`), as `python -m benchmarks` does.
"""

# ruff: noqa: S608 - the SQL here is constant text: JobState members and module constants, never input

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
import asyncpg
import psycopg
from psycopg_pool import AsyncConnectionPool

from benchmarks.revision import revision
from gridd.protocol.states import JobState
from tests.pgserver import PgServer, free_port

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.jsonl"
POOL = 4
PREFILL = 5000
QUEUE = "default"
CHANNEL = "gridd_jobs"
SPEC = bytes(random.Random(19).randbytes(120))  # about a msgpack JobSpec of a short command
WARMUP = 10  # past psycopg's prepare_threshold (5): both drivers run prepared statements when timed

Q, R, S = JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED

SCHEMA = f"""
CREATE TABLE jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    state         text    NOT NULL,
    queue         text    NOT NULL,
    lane          text    NOT NULL DEFAULT '',
    priority      integer NOT NULL,
    max_attempts  integer NOT NULL,
    spec          bytea   NOT NULL,
    attempts      integer NOT NULL DEFAULT 0,
    lease         bigint  NOT NULL DEFAULT 0,
    worker        text,
    instance      text    NOT NULL DEFAULT '',
    deadline_ms   bigint,
    not_before_ms bigint  NOT NULL DEFAULT 0,
    exit_code     integer,
    reason        text,
    submitted_ms  bigint  NOT NULL,
    started_ms    bigint,
    finished_ms   bigint,
    group_id      bigint,
    pending_deps  integer NOT NULL DEFAULT 0,
    throttled     integer NOT NULL DEFAULT 0,
    records       integer,
    cpus          integer NOT NULL DEFAULT 1,
    memory_mb     integer NOT NULL DEFAULT 0,
    args_blob     text,
    owner         text    NOT NULL DEFAULT 'admin'
);
CREATE INDEX jobs_ready ON jobs (queue, lane, priority DESC, id) WHERE state = '{Q}' AND throttled = 0;
CREATE INDEX jobs_deadline ON jobs (deadline_ms) WHERE state = '{R}';
CREATE INDEX jobs_worker ON jobs (worker) WHERE state = '{R}';
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_owner ON jobs (owner, id);
CREATE TABLE attempts (
    job_id     bigint  NOT NULL,
    lease      bigint  NOT NULL,
    attempt    integer NOT NULL,
    worker     text,
    started_ms bigint,
    ended_ms   bigint  NOT NULL,
    exit_code  integer,
    outcome    text    NOT NULL,
    code       text,
    bundle     text,
    wall_ms    bigint,
    PRIMARY KEY (job_id, lease)
);
INSERT INTO jobs (state, queue, priority, max_attempts, spec, submitted_ms)
    SELECT '{Q}', '{QUEUE}', 0, 3, decode('{SPEC.hex()}', 'hex'), 0 FROM generate_series(1, {PREFILL});
"""

# Statements in psycopg's placeholders (%s); asyncpg gets them as $1, $2... (see dollar()).
INSERT_ONE = (
    f"INSERT INTO jobs (state, queue, priority, max_attempts, spec, submitted_ms) VALUES ('{Q}', %s, %s, 3, %s, %s)"
    " RETURNING id"
)
INSERT_UNNEST = (
    "INSERT INTO jobs (state, queue, priority, max_attempts, spec, submitted_ms)"
    f" SELECT '{Q}', %s, p, 3, s, %s FROM unnest(%s::integer[], %s::bytea[]) AS t(p, s) RETURNING id"
)
LEASE = (
    f"UPDATE jobs SET state = '{R}', attempts = attempts + 1, lease = (random() * 9.2e18)::bigint,"
    " worker = %s, deadline_ms = %s, started_ms = %s, not_before_ms = 0"
    f" WHERE id IN (SELECT id FROM jobs WHERE state = '{Q}' AND throttled = 0 AND queue = %s AND lane = ''"
    " ORDER BY priority DESC, id LIMIT %s FOR UPDATE SKIP LOCKED)"
    " RETURNING id, lease, attempts, spec, submitted_ms"
)
COMPLETE_ONE = (
    f"UPDATE jobs SET state = '{S}', exit_code = %s, finished_ms = %s, worker = NULL, deadline_ms = NULL"
    f" WHERE id = %s AND lease = %s AND state = '{R}' RETURNING id"
)
ATTEMPT_ONE = (
    "INSERT INTO attempts (job_id, lease, attempt, worker, started_ms, ended_ms, exit_code, outcome)"
    f" VALUES (%s, %s, %s, %s, %s, %s, %s, '{S}')"
)
COMPLETE_UNNEST = (
    f"WITH done AS (UPDATE jobs SET state = '{S}', exit_code = t.exit_code, finished_ms = %s, worker = NULL,"
    " deadline_ms = NULL FROM unnest(%s::bigint[], %s::bigint[], %s::integer[]) AS t(id, lease, exit_code)"
    f" WHERE jobs.id = t.id AND jobs.lease = t.lease AND jobs.state = '{R}'"
    " RETURNING jobs.id, jobs.lease, jobs.attempts, jobs.started_ms, t.exit_code)"
    " INSERT INTO attempts (job_id, lease, attempt, worker, started_ms, ended_ms, exit_code, outcome)"
    f" SELECT id, lease, attempts, %s, started_ms, %s, exit_code, '{S}' FROM done RETURNING job_id"
)
READ = (
    "SELECT id, state, queue, priority, attempts, lease, worker, exit_code, spec, submitted_ms FROM jobs WHERE id = %s"
)
NOTIFY = f"SELECT pg_notify('{CHANNEL}', %s)"


def binary(sql: str) -> str:
    """psycopg's %b placeholders: parameters sent in binary, as asyncpg always does. Text parameters cost psycopg
    about 3x the CPU on a bytea[] of 100 specs (escaping every byte), nothing on a job id."""
    return sql.replace("%s", "%b")


def dollar(sql: str) -> str:
    """psycopg's %s placeholders as PostgreSQL's $1, $2... (asyncpg's)."""
    parts = sql.split("%s")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


Leased = list[tuple[int, int, int, int]]  # id, lease, attempt, started_ms


@dataclass(frozen=True)
class Listener:
    """A connection LISTENing on CHANNEL: next() waits for the next notification's payload."""

    next: Callable[[], Awaitable[str]]
    close: Callable[[], Awaitable[None]]


class Driver(Protocol):
    name: str

    async def open(self, url: str) -> None: ...
    async def close(self) -> None: ...
    async def insert(self, priorities: list[int]) -> list[int]: ...
    async def insert_unnest(self, priorities: list[int]) -> list[int]: ...
    async def lease(self, n: int) -> Leased: ...
    async def complete(self, leased: Leased) -> int: ...
    async def complete_unnest(self, leased: Leased) -> int: ...
    async def read(self, job_id: int) -> Any: ...
    async def listen(self, url: str) -> Listener: ...
    async def notify(self, payload: str) -> None: ...


class Psycopg:
    """psycopg 3 (C implementation, psycopg-binary), AsyncConnectionPool, autocommit connections, parameters in
    binary; executemany and the completion's two statements go through pipeline mode."""

    name = "psycopg"

    async def open(self, url: str) -> None:
        self.pool = AsyncConnectionPool(url, min_size=POOL, max_size=POOL, open=False, kwargs={"autocommit": True})
        await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        await self.pool.close()

    async def insert(self, priorities: list[int]) -> list[int]:
        ts = now_ms()
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(binary(INSERT_ONE), [(QUEUE, p, SPEC, ts) for p in priorities], returning=True)
            ids = []
            while True:
                row = await cur.fetchone()
                if row is not None:
                    ids.append(row[0])
                if not cur.nextset():
                    return ids

    async def insert_unnest(self, priorities: list[int]) -> list[int]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(binary(INSERT_UNNEST), (QUEUE, now_ms(), priorities, [SPEC] * len(priorities)))
            return [r[0] for r in await cur.fetchall()]

    async def lease(self, n: int) -> Leased:
        ts = now_ms()
        async with self.pool.connection() as conn:
            cur = await conn.execute(binary(LEASE), ("w1", ts + 30_000, ts, QUEUE, n))
            return [(r[0], r[1], r[2], ts) for r in await cur.fetchall()]

    async def complete(self, leased: Leased) -> int:
        ts = now_ms()
        async with self.pool.connection() as conn, conn.transaction(), conn.pipeline(), conn.cursor() as cur:
            ended = [(0, ts, i, lease) for i, lease, _, _ in leased]
            await cur.executemany(binary(COMPLETE_ONE), ended, returning=True)
            done = 0
            while True:
                done += len(await cur.fetchall())
                if not cur.nextset():
                    break
            await cur.executemany(binary(ATTEMPT_ONE), [(i, ls, a, "w1", st, ts, 0) for i, ls, a, st in leased])
            return done

    async def complete_unnest(self, leased: Leased) -> int:
        ts = now_ms()
        ids, leases = [r[0] for r in leased], [r[1] for r in leased]
        async with self.pool.connection() as conn:
            cur = await conn.execute(binary(COMPLETE_UNNEST), (ts, ids, leases, [0] * len(ids), "w1", ts))
            return len(await cur.fetchall())

    async def read(self, job_id: int) -> Any:
        async with self.pool.connection() as conn:
            cur = await conn.execute(binary(READ), (job_id,))
            return await cur.fetchone()

    async def listen(self, url: str) -> Listener:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        await conn.execute(f"LISTEN {CHANNEL}")
        notes = conn.notifies()

        async def next_payload() -> str:
            return (await anext(notes)).payload

        async def close() -> None:
            await notes.aclose()
            await conn.close()

        return Listener(next_payload, close)

    async def notify(self, payload: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(binary(NOTIFY), (payload,))


class Asyncpg:
    """asyncpg and its pool. `reset=False`: the pool's release skips the reset query (a round trip that
    closes cursors, UNLISTENs, RESETs ALL) that asyncpg sends by default on every release."""

    def __init__(self, reset: bool = True) -> None:
        self.reset = reset
        self.name = "asyncpg" if reset else "asyncpg-noreset"

    async def open(self, url: str) -> None:
        async def no_reset(conn: Any) -> None:
            return None

        self.pool = await asyncpg.create_pool(
            url, min_size=POOL, max_size=POOL, **({} if self.reset else {"reset": no_reset})
        )

    async def close(self) -> None:
        await self.pool.close()

    async def insert(self, priorities: list[int]) -> list[int]:
        ts = now_ms()
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetchmany(dollar(INSERT_ONE), [(QUEUE, p, SPEC, ts) for p in priorities])
            return [r[0] for r in rows]

    async def insert_unnest(self, priorities: list[int]) -> list[int]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(dollar(INSERT_UNNEST), QUEUE, now_ms(), priorities, [SPEC] * len(priorities))
            return [r[0] for r in rows]

    async def lease(self, n: int) -> Leased:
        ts = now_ms()
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(dollar(LEASE), "w1", ts + 30_000, ts, QUEUE, n)
            return [(r[0], r[1], r[2], ts) for r in rows]

    async def complete(self, leased: Leased) -> int:
        ts = now_ms()
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetchmany(dollar(COMPLETE_ONE), [(0, ts, i, lease) for i, lease, _, _ in leased])
            await conn.executemany(dollar(ATTEMPT_ONE), [(i, ls, a, "w1", st, ts, 0) for i, ls, a, st in leased])
            return len(rows)

    async def complete_unnest(self, leased: Leased) -> int:
        ts = now_ms()
        ids, leases = [r[0] for r in leased], [r[1] for r in leased]
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(dollar(COMPLETE_UNNEST), ts, ids, leases, [0] * len(ids), "w1", ts)
            return len(rows)

    async def read(self, job_id: int) -> Any:
        async with self.pool.acquire() as conn:
            return await conn.fetchrow(dollar(READ), job_id)

    async def listen(self, url: str) -> Listener:
        conn = await asyncpg.connect(url)
        send, receive = anyio.create_memory_object_stream[str](100)

        def callback(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            send.send_nowait(payload)  # asyncpg calls back on the event loop's thread

        await conn.add_listener(CHANNEL, callback)

        async def close() -> None:
            await conn.close()
            send.close()
            receive.close()

        return Listener(receive.receive, close)

    async def notify(self, payload: str) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(dollar(NOTIFY), payload)


@dataclass(frozen=True)
class Op:
    key: str
    label: str
    batch: int  # jobs per operation (0: not a job operation)


OPS = [
    Op("insert100", "insert 100 jobs, 1 tx (driver batching)", 100),
    Op("insert100_unnest", "insert 100 jobs, 1 statement (unnest)", 100),
    Op("lease1", "lease n=1 (SKIP LOCKED)", 1),
    Op("lease32", "lease n=32 (SKIP LOCKED)", 32),
    Op("complete32", "complete 32 + attempts, 1 tx (driver batching)", 32),
    Op("complete32_unnest", "complete 32 + attempts, 1 statement (unnest CTE)", 32),
    Op("read", "read one job by id", 1),
    Op("notify", "LISTEN/NOTIFY wake-up, 2 connections", 0),
]


@dataclass(frozen=True)
class Sizes:
    inserts: int
    leases: int
    completes: int
    reads: int
    notifies: int


DEFAULT = Sizes(inserts=40, leases=150, completes=50, reads=400, notifies=150)
QUICK = Sizes(inserts=10, leases=30, completes=10, reads=80, notifies=30)


Sample = tuple[float, float]  # wall ms, this process's CPU in us (the driver's own cost, whatever the server does)


async def timed(samples: list[Sample], call: Awaitable[Any], keep: bool) -> Any:
    """Await `call`; its latency goes to `samples` if `keep` (False: a warm-up round)."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = await call
    if keep:
        samples.append(((time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1e6))
    return result


async def measure(driver: Driver, url: str, sizes: Sizes) -> dict[str, list[Sample]]:
    """Latencies in ms per operation, for one driver on a fresh database; the first WARMUP rounds left out."""
    lat: dict[str, list[Sample]] = {op.key: [] for op in OPS}
    await driver.open(url)
    try:
        for i in range(WARMUP + sizes.inserts):
            prios = [i % 3] * 100
            ids = await timed(lat["insert100"], driver.insert(prios), i >= WARMUP)
            ids2 = await timed(lat["insert100_unnest"], driver.insert_unnest(prios), i >= WARMUP)
            if len(ids) != 100 or len(ids2) != 100:
                raise RuntimeError(f"{driver.name}: insert returned {len(ids)}, {len(ids2)} ids, not 100")
        for i in range(WARMUP + sizes.leases):
            if len(await timed(lat["lease1"], driver.lease(1), i >= WARMUP)) != 1:
                raise RuntimeError(f"{driver.name}: lease n=1 found no job")
        for i in range(WARMUP + sizes.completes):
            for key, complete in (("complete32", driver.complete), ("complete32_unnest", driver.complete_unnest)):
                leased = await timed(lat["lease32"], driver.lease(32), i >= WARMUP)
                done = await timed(lat[key], complete(leased), i >= WARMUP)
                if len(leased) != 32 or done != 32:
                    raise RuntimeError(f"{driver.name}: leased {len(leased)}, completed {done}, not 32")
        rng = random.Random(7)
        for i in range(WARMUP + sizes.reads):
            if await timed(lat["read"], driver.read(rng.randint(1, PREFILL)), i >= WARMUP) is None:
                raise RuntimeError(f"{driver.name}: read found no job")
        lat["notify"] = (await notify_latencies(driver, url, WARMUP + sizes.notifies))[WARMUP:]
    finally:
        await driver.close()
    return lat


async def notify_latencies(driver: Driver, url: str, count: int) -> list[Sample]:
    """From before pg_notify is sent on one connection to the payload's arrival on the listening one."""
    listener = await driver.listen(url)
    samples: list[Sample] = []
    try:
        for i in range(count):
            t0, c0 = time.perf_counter(), time.process_time()
            await driver.notify(str(i))
            with anyio.fail_after(5):
                payload = await listener.next()
            samples.append(((time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1e6))
            if payload != str(i):
                raise RuntimeError(f"{driver.name}: notification {payload!r} arrived, {i} expected")
    finally:
        await listener.close()
    return samples


STATS = {"p50_ms": "ms", "p99_ms": "ms", "jobs_s": "jobs/s", "cpu_us": "us"}


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


async def failover_check(driver: Driver, url: str) -> str:
    """Connect through a multi-host URL (first host down, second read-only, third read-write) with
    target_session_attrs=read-write, once directly and once through the driver's pool; which port it reached."""
    if isinstance(driver, Psycopg):
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        direct = (await (await conn.execute("SELECT inet_server_port()")).fetchone() or [None])[0]
        await conn.close()
    else:
        conn = await asyncpg.connect(url)
        direct = await conn.fetchval("SELECT inet_server_port()")
        await conn.close()
    await driver.open(url)
    try:
        if isinstance(driver, Psycopg):
            async with driver.pool.connection() as pconn:
                pooled = (await (await pconn.execute("SELECT inet_server_port()")).fetchone() or [None])[0]
        else:
            async with driver.pool.acquire() as aconn:
                pooled = await aconn.fetchval("SELECT inet_server_port()")
    finally:
        await driver.close()
    return f"{direct},{pooled}"


def run_failover_checks(drivers: list[Driver]) -> dict[str, str]:
    """Multi-host failover as libpq URLs express it: which server each driver reached, or its error. Once with
    the URL alone, once with libpq's connect_timeout in it (what bounds the wait on a host that is down)."""
    results: dict[str, str] = {}
    with PgServer(fsync=False, settings={"default_transaction_read_only": "on"}) as ro, PgServer(fsync=False) as rw:
        down = free_port()
        hosts = ",".join(f"127.0.0.1:{p}" for p in (down, ro.port, rw.port))
        url = f"postgresql://postgres@{hosts}/postgres?target_session_attrs=read-write"
        for label, variant in (("", url), (" +connect_timeout", f"{url}&connect_timeout=5")):
            for driver in drivers:
                try:
                    reached = anyio.run(failover_check, driver, variant, backend="asyncio")
                    want = f"{rw.port},{rw.port}"
                    verdict = "ok" if reached == want else f"reached {reached}, wanted {want}"
                except Exception as exc:  # noqa: BLE001 - a driver's failure here is the finding
                    verdict = f"{type(exc).__name__}: {exc}"
                results[driver.name + label] = verdict
    return results


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pg_drivers", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="runs; the table shows medians (default 3, --quick 1)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run: a smoke test")
    parser.add_argument(
        "--fsync",
        choices=["on", "off"],
        default="on",
        help="the server's fsync (default on, as in production; off: commits cost no disk flush, so the "
        "drivers' own cost shows)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not append to benchmarks/results.jsonl")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else DEFAULT
    runs = args.runs or (1 if args.quick else 3)
    drivers: list[Driver] = [Psycopg(), Asyncpg(), Asyncpg(reset=False)]
    versions = {"psycopg": psycopg.__version__, "libpq": psycopg.pq.version(), "asyncpg": asyncpg.__version__}
    t_all = time.perf_counter()
    # per driver, per op: the per-run medians, p99s and implied jobs/s
    per_run: dict[str, dict[str, dict[str, list[float]]]] = {
        d.name: {op.key: {stat: [] for stat in STATS} for op in OPS} for d in drivers
    }
    errors: list[str] = []
    with PgServer(fsync=args.fsync == "on") as server:
        server_version = server.psql("SHOW server_version")
        print(
            f"pg-drivers: psycopg {versions['psycopg']} (libpq {versions['libpq']}), asyncpg {versions['asyncpg']}, "
            f"PostgreSQL {server_version} (fsync {args.fsync}), {runs} run(s), {os.cpu_count()} cores",
            flush=True,
        )
        server.create_database("bench_template")
        server.psql(SCHEMA, "bench_template")
        server.psql("VACUUM ANALYZE jobs", "bench_template")
        for run in range(runs):
            order = drivers if run % 2 == 0 else drivers[::-1]
            for driver in order:
                db = f"bench_{run}_{driver.name.replace('-', '_')}"
                server.create_database(db, template="bench_template")
                print(f"  run {run + 1}/{runs} {driver.name} ...", end="", flush=True)
                t0 = time.perf_counter()
                try:
                    lat = anyio.run(measure, driver, server.url(db), sizes, backend="asyncio")
                except Exception as exc:  # noqa: BLE001 - one driver's crash must not lose the other's figures
                    errors.append(f"{driver.name} run {run + 1}: {type(exc).__name__}: {exc}")
                    print(f" FAILED: {errors[-1]}", flush=True)
                    continue
                finally:
                    server.drop_database(db)
                print(f" {time.perf_counter() - t0:.1f}s", flush=True)
                for op in OPS:
                    walls = [wall for wall, _ in lat[op.key]]
                    mid = statistics.median(walls)
                    fig = per_run[driver.name][op.key]
                    fig["p50_ms"].append(mid)
                    fig["p99_ms"].append(p99(walls))
                    fig["cpu_us"].append(statistics.fmean(cpu for _, cpu in lat[op.key]))
                    if op.batch:
                        fig["jobs_s"].append(op.batch / mid * 1000)
    failover = run_failover_checks(drivers)

    def med(name: str, op: str, stat: str) -> float | None:
        values = per_run[name][op][stat]
        return statistics.median(values) if values else None

    header = ["operation", "driver", "p50 ms", "p99 ms", "jobs/s", "client CPU us/op"]
    rows = [
        [op.label if i == 0 else "", d.name] + [_fmt(med(d.name, op.key, s)) for s in STATS]
        for op in OPS
        for i, d in enumerate(drivers)
    ]
    print()
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print()
    for name, verdict in failover.items():
        print(f"multi-host URL, target_session_attrs=read-write (down, read-only, read-write): {name}: {verdict}")
    for err in errors:
        print(f"ERROR: {err}")
    print(f"total {time.perf_counter() - t_all:.0f}s")

    figures: dict[str, Any] = {}
    for d in drivers:
        for op in OPS:
            for stat, unit in STATS.items():
                values = per_run[d.name][op.key][stat]
                if not values:
                    continue
                peer = None if d.name == "psycopg" else f"psycopg.{op.key}.{stat}"
                peer_values = per_run["psycopg"][op.key][stat]
                ratios = [a / b for a, b in zip(values, peer_values, strict=False) if b] if peer else []
                figures[f"{d.name}.{op.key}.{stat}"] = {
                    "label": f"{d.name}: {op.label}",
                    "unit": unit,
                    "runs": values,
                    "median": statistics.median(values),
                    "peer": peer,
                    "peer_median": statistics.median(peer_values) if peer and peer_values else None,
                    "ratio": statistics.median(ratios) if ratios else None,
                    "target": None,
                    "met": None,
                }
    record = {
        "scenario": "pg-drivers",
        "about": "psycopg 3 vs asyncpg on a queue broker's hot path (issue 19), pools of "
        f"{POOL}, one operation at a time, PostgreSQL {server_version} fsync {args.fsync}, anyio/asyncio",
        "figures": figures,
        "runs": runs,
        "runs_ok": runs - len({e.split(" run ")[1].split(":")[0] for e in errors}),
        "errors": errors,
        "notes": [f"failover {name}: {verdict}" for name, verdict in failover.items()],
        "sizes": {**vars(sizes), "prefill": PREFILL, "pool": POOL, **versions},
        "seconds": round(time.perf_counter() - t_all, 1),
        **revision(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform},
        "mode": ("quick" if args.quick else "default") + ("" if args.fsync == "on" else ", fsync off"),
    }
    if not args.no_save:
        with RESULTS.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        print(f"appended 1 line to {RESULTS.relative_to(HERE.parent)}")
    return 1 if errors else 0  # a driver failing a failover check is a finding, printed and recorded


if __name__ == "__main__":
    sys.exit(main())

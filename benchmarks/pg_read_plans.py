"""The plans PostgreSQL makes for the store's reads (`gridd jobs`, `gridd why`, show, report) and retention's
purge, on a database of 100,000 jobs: each statement the use case runs, captured as it runs, then run again
under EXPLAIN ANALYZE with its parameters, as a custom plan and as the generic plan a prepared statement gets
after psycopg prepares it (its fifth run). Prints each plan's first lines and time, and says where a plan
reads the whole jobs table (a Seq Scan on jobs) where an index would do.

Run: `python -m benchmarks.pg_read_plans [--jobs 100000]` (a throwaway server, tests/pgserver.py).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec
import psycopg

import gridd.broker.store.reads as reads
import gridd.broker.store.retention as retention
import gridd.broker.store.why as why
from gridd.broker.schema.postgresql import migrate
from gridd.broker.store.pg_commit import connect
from gridd.broker.store.pg_tx import PgTx, translate
from gridd.broker.store.sql import Cursor
from gridd.protocol.messages import JobSpec
from gridd.protocol.states import JobState
from tests.pgserver import PgServer

NOW_MS = 1_700_000_000_000
_encode = msgspec.msgpack.Encoder().encode


class RecordingTx(PgTx):
    """A PgTx that keeps each statement it runs with its parameters."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        super().__init__(conn)
        self.seen: list[tuple[str, Sequence[Any]]] = []

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor:
        self.seen.append((sql, params))
        return super().execute(sql, params)


def fill(conn: psycopg.Connection[Any], jobs: int) -> None:
    """`jobs` jobs as a grid that ran a while holds them: most finished, some queued, running, waiting on
    others, in groups; three queues, ten owners; attempts and outputs for the finished."""
    rng = random.Random(7)
    states = [JobState.SUCCEEDED] * 85 + [JobState.FAILED] * 5 + [JobState.QUEUED] * 6 + [JobState.RUNNING] * 2
    states += [JobState.WAITING] * 2
    conn.execute("INSERT INTO groups (id, max_running, submitted_ms) SELECT g, 4, 0 FROM generate_series(1, 500) g")
    spec = _encode(JobSpec(argv=["sh", "-c", "echo hello"]))
    with conn.cursor() as cur:
        with cur.copy(
            "COPY jobs (id, state, queue, priority, max_attempts, spec, submitted_ms, started_ms, finished_ms,"
            " group_id, owner, lease, worker, attempts) FROM STDIN"
        ) as copy:
            for i in range(1, jobs + 1):
                state = rng.choice(states)
                finished = state in (JobState.SUCCEEDED, JobState.FAILED)
                ran = finished or state == JobState.RUNNING
                copy.write_row(
                    (
                        i,
                        str(state),
                        f"q{i % 3}",
                        0,
                        3,
                        spec,
                        NOW_MS + i,
                        NOW_MS + i + 10 if ran else None,
                        NOW_MS + i + 20 if finished else None,
                        (i % 500) + 1 if i % 4 == 0 else None,
                        f"user{i % 10}",
                        i if ran else 0,
                        f"w{i % 20}" if ran else None,
                        1 if ran else 0,
                    )
                )
        # (the connection is busy during a COPY: what a COPY writes is read before it)
        finished = [r[0] for r in conn.execute("SELECT id FROM jobs WHERE finished_ms IS NOT NULL").fetchall()]
        waiting = [r[0] for r in conn.execute("SELECT id FROM jobs WHERE state = %s", (str(JobState.WAITING),))]
        with cur.copy("COPY attempts (job_id, lease, attempt, worker, ended_ms, outcome, wall_ms) FROM STDIN") as copy:
            for i in finished:
                copy.write_row((i, i, 1, f"w{i % 20}", NOW_MS + i + 20, "exited", 10))
        with cur.copy("COPY outputs (job_id, stream, data, truncated) FROM STDIN") as copy:
            for i in finished:
                copy.write_row((i, "stdout", b"hello\n", 0))
        with cur.copy("COPY deps (job_id, dep_id) FROM STDIN") as copy:
            for i in waiting:
                for dep in {max(1, i - 7), max(1, i - 3)}:
                    copy.write_row((i, dep))
    conn.execute("UPDATE jobs SET pending_deps = 1 WHERE state = %s", (str(JobState.WAITING),))
    conn.execute("VACUUM ANALYZE")


def plans(conn: psycopg.Connection[Any], name: str, fn: Callable[[RecordingTx], object]) -> list[str]:
    """Run `fn` in a transaction rolled back after, then EXPLAIN ANALYZE each statement it ran; returns the
    statements whose plan scans the whole jobs table."""
    tx = RecordingTx(conn)
    conn.execute("BEGIN")
    started = time.perf_counter()
    fn(tx)
    took = time.perf_counter() - started
    conn.execute("ROLLBACK")
    print(f"\n=== {name}: {len(tx.seen)} statements, {took * 1000:.1f} ms")
    scanning: list[str] = []
    for sql, params in tx.seen:
        text = translate(sql).decode()
        print(f"--- {' '.join(text.split())[:150]}")
        for mode in ("auto", "force_generic_plan"):
            conn.execute("BEGIN")
            conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
            conn.execute("PREPARE plan_me AS " + _numbered(text))
            # EXECUTE takes no bound parameters: its arguments are written in as literals (a client cursor)
            explain = f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE plan_me{_args(params)}"
            rows = psycopg.ClientCursor(conn).execute(explain, params or None)
            lines = [r[0] for r in rows]
            conn.execute("ROLLBACK")
            conn.execute("DEALLOCATE plan_me")
            label = "custom " if mode == "auto" else "generic"
            total = next((line for line in lines if line.startswith("Execution Time")), "")
            print(f"  {label}: {total}")
            for line in lines[:6]:
                print(f"     {line}")
            if any("Seq Scan on jobs" in line for line in lines):
                scanning.append(f"{name} ({label}): {' '.join(text.split())[:100]}")
    return scanning


def _numbered(text: str) -> str:
    """%s placeholders as $1, $2, ... (PREPARE's spelling)."""
    parts = text.split("%s")
    return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "") for i, p in enumerate(parts)).replace("%%", "%")


def _args(params: Iterable[Any]) -> str:
    n = len(list(params))
    return "(" + ", ".join(["%s"] * n) + ")" if n else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()
    with PgServer(fsync=False) as server:
        server.create_database("plans")
        conn = connect(server.url("plans"))
        migrate(conn)
        started = time.perf_counter()
        fill(conn, args.jobs)
        print(f"{args.jobs} jobs in {time.perf_counter() - started:.1f} s", flush=True)
        newest = args.jobs
        newest_in = "SELECT MAX(id) FROM jobs WHERE state = %s AND (%s OR group_id IS NOT NULL)"
        waiting = conn.execute(newest_in, (str(JobState.WAITING), True)).fetchone()[0]
        queued_in_group = conn.execute(newest_in, (str(JobState.QUEUED), False)).fetchone()[0]
        running_now = conn.execute("SELECT id FROM jobs WHERE state = %s LIMIT 40", (str(JobState.RUNNING),))
        running = [str(r[0]) for r in running_now]
        scanning: list[str] = []
        cases: list[tuple[str, Callable[[RecordingTx], object]]] = [
            ("jobs (newest 100)", lambda tx: reads.list_jobs(tx, None, None, 100)),
            ("jobs --limit 0 (every job, paged by bytes)", lambda tx: reads.list_jobs(tx, None, None, 0)),
            ("jobs --state queued", lambda tx: reads.list_jobs(tx, str(JobState.QUEUED), None, 100)),
            ("jobs --state waiting", lambda tx: reads.list_jobs(tx, str(JobState.WAITING), None, 100)),
            ("jobs --state cancelled (none)", lambda tx: reads.list_jobs(tx, str(JobState.CANCELLED), None, 100)),
            ("jobs --queue q1", lambda tx: reads.list_jobs(tx, None, "q1", 100)),
            ("jobs of owner user3 (a submit token)", lambda tx: reads.list_jobs(tx, None, None, 100, owner="user3")),
            ("jobs --group g5 (200 jobs)", lambda tx: reads.list_jobs(tx, None, None, 100, group="g5")),
            ("jobs --group g7 (empty)", lambda tx: reads.list_jobs(tx, None, None, 100, group="g7")),
            ("jobs --before (second page)", lambda tx: reads.list_jobs(tx, None, None, 100, before=str(newest - 100))),
            ("why (waiting job)", lambda tx: why.job_facts(tx, str(waiting), running)),
            ("why (queued job in a capped group)", lambda tx: why.job_facts(tx, str(queued_in_group), running)),
            ("show", lambda tx: reads.get_job(tx, str(newest - 5))),
            ("report --by owner, last 1000 attempts", lambda tx: reads.report(tx, "owner", NOW_MS + newest - 1_000)),
            ("report --by owner, all 90,000 attempts", lambda tx: reads.report(tx, "owner", 0)),
            ("count_by_queue (broker start)", reads.count_by_queue),
            ("purge (500 oldest finished)", lambda tx: retention.purge_finished(tx, NOW_MS + newest, 500)),
        ]
        for name, fn in cases:
            scanning += plans(conn, name, fn)
        print("\n=== statements whose plan reads the whole jobs table:")
        for line in scanning or ["(none)"]:
            print(f"  {line}")
        conn.close()


if __name__ == "__main__":
    main()

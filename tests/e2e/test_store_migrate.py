"""`gridd store migrate --from DATA_DIR --to URL`: a real broker's SQLite grid, made by real jobs (succeeded,
failed with output, a group with dependencies and a submit key, a task whose result is a blob, a bundle, a
token, a schedule, queued, held and delayed jobs), moved into a fresh PostgreSQL database; then a broker on
that database, given the old data dir's CA and token, shows the same grid. Refusals: a target that holds jobs
(left as it was), a data dir a broker runs on, a schema newer than gridd's, bad input (exit 2, 3, 1)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

import gridd
from gridd.broker.schema.sqlite import MIGRATIONS
from tests.e2e.conftest import GRIDD, Grid, clean_env
from tests.pg_fixtures import PgDatabase
from tests.tasks import sample

BLOB_BYTES = 2 * 1024 * 1024  # a task result above the client's inline limit (1 MiB): kept as a blob
IDLE_QUEUE = "nobody-serves"
# Tables the grid below puts rows in (meta is written by retention only; lanes and schedule_runs may be empty).
FILLED = {"jobs", "groups", "deps", "attempts", "outputs", "results", "blobs", "blob_chunks", "bundles", "tokens"}
FILLED |= {"schedules", "submit_keys"}


REPO = Path(__file__).resolve().parent.parent.parent


@dataclass
class OldGrid:
    """A stopped SQLite broker's data dir, and what its CLI showed before it stopped."""

    data_dir: Path
    credential: str  # the admin credential in its token file (its own CA)
    alice: str  # a submit token made with `gridd token create`
    shown: dict[str, dict[str, Any]]  # job id -> `gridd show --json`
    listed: list[dict[str, Any]]  # `gridd jobs --limit 0 --json`
    logs: dict[str, tuple[str, str]]  # job id -> `gridd logs`, `gridd logs --stderr`
    task: str
    blob: bytes  # the task's result
    schedules: list[dict[str, Any]]
    bundles: list[dict[str, Any]]


@pytest.fixture(scope="module")
def old_grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OldGrid]:
    grid = Grid(tmp_path_factory.mktemp("sqlite-grid"))
    try:
        yield _make_grid(grid)
    finally:
        grid.close()


def _make_grid(grid: Grid) -> OldGrid:
    grid.own_ca = True  # it makes its CA and token file, as on a first start: the trust that must move
    del grid.env["GRIDD_TOKEN"]
    grid.start_broker()
    credential = (grid.data_dir / "token").read_text().strip()
    grid.env["GRIDD_TOKEN"] = credential
    grid.env["PYTHONPATH"] = str(REPO)  # the worker imports tests.tasks.sample, from this checkout
    grid.start_worker("w1", slots=2, flags=["--tasks", "tests.tasks.sample"])
    grid.wait_worker_connected("w1")  # a worker that cannot import its tasks exits: fail here, not in result()
    ok = grid.submit("sh", "-c", "echo out; echo err >&2")
    bad = grid.submit("sh", "-c", "echo attempt $GRIDD_ATTEMPT; echo broken >&2; exit 3", flags=["--max-attempts", "2"])
    array = grid.ok("submit", "--array", "1-3", "--max-running", "1", "--key", "k1", "--", "echo", "item").split()
    group = grid.show(array[0])["group"]
    after = grid.submit("echo", "after", flags=["--after", str(group)])
    src = grid.root / "bundle-src"
    src.mkdir()
    (src / "run.sh").write_text("echo from the bundle\n")
    grid.ok("bundle", "push", "demo", str(src))
    bundled = grid.submit("sh", "run.sh", flags=["--bundle", "demo"])
    queued = grid.submit("true", flags=["--queue", IDLE_QUEUE])
    held = grid.submit("true", flags=["--queue", IDLE_QUEUE])
    grid.ok("hold", held)
    later = grid.submit("true", flags=["--in", "1d"])
    alice = grid.ok("token", "create", "--role", "submit", "--name", "alice").strip()
    hers = grid.cli("submit", "--queue", IDLE_QUEUE, "--", "true", env={**grid.env, "GRIDD_TOKEN": alice})
    assert hers.returncode == 0, hers.stderr
    grid.ok("schedule", "add", "nightly", "--cron", "0 2 * * *", "--", "echo", "nightly")
    with gridd.connect_sync(grid.addr, credential):
        handle = sample.blob_of.submit(BLOB_BYTES)
        blob = handle.result()
        task = str(handle.id)
    for job in (ok, *array, after, bundled):
        grid.wait_state(job, "succeeded")
    grid.wait_state(bad, "failed", timeout=30)
    ids = [ok, bad, *array, after, bundled, queued, held, later, hers.stdout.decode().strip(), task]
    shown = {job: grid.show(job) for job in ids}
    assert shown[bad]["attempts"] == 2 and shown[later]["state"] == "scheduled" and shown[held]["state"] == "held"
    logs = {job: (grid.ok("logs", job), grid.ok("logs", job, "--stderr")) for job in (ok, bad, bundled)}
    old = OldGrid(
        grid.data_dir,
        credential,
        alice,
        shown,
        grid.json("jobs", "--limit", "0"),
        logs,
        task,
        blob,
        grid.json("schedule", "list"),
        grid.json("bundle", "list"),
    )
    grid.close()  # the broker stops (SIGTERM): the data dir is what a user would migrate
    return old


def migrate(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*GRIDD, "store", "migrate", *args], capture_output=True, text=True, timeout=120, env=clean_env(root)
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def copy_of(old: OldGrid, tmp_path: Path) -> Path:
    """The stopped broker's data dir, copied: each test migrates its own."""
    return Path(shutil.copytree(old.data_dir, tmp_path / "old-data"))


def quoted(name: str) -> str:
    return '"' + name + '"'


def every_row(db: Path, url: str) -> dict[str, tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Each SQLite table's rows on both sides, columns in SQLite's order, sorted the same way."""
    found = {}
    with sqlite3.connect(db) as lite, psycopg.connect(url) as pg:
        tables = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = ", ".join(quoted(r[1]) for r in lite.execute(f"PRAGMA table_info({quoted(table)})"))
            query = f"SELECT {columns} FROM {quoted(table)}"
            ours = sorted(lite.execute(query).fetchall(), key=repr)
            theirs = sorted((tuple(r) for r in pg.execute(query.encode()).fetchall()), key=repr)
            found[table] = (ours, theirs)
    return found


def stored(record: dict[str, Any]) -> dict[str, Any]:
    """A job's record without what depends on the workers connected now (`unmatched`: why none takes it)."""
    return {k: v for k, v in record.items() if k != "unmatched"}


def pg_value(url: str, query: str) -> Any:
    with psycopg.connect(url) as pg:
        row = pg.execute(query.encode()).fetchone()
    assert row is not None
    return row[0]


def test_every_row_of_every_table_arrives_byte_for_byte(
    old_grid: OldGrid, pg_database: PgDatabase, tmp_path: Path
) -> None:
    data_dir = copy_of(old_grid, tmp_path)
    done = migrate(tmp_path, "--from", str(data_dir), "--to", pg_database.url)
    assert done.returncode == 0, done.stderr

    rows = every_row(data_dir / "gridd.db", pg_database.url)
    highest = max(int(job) for job in old_grid.shown)
    ours, theirs = rows.pop("meta")  # copied, then the largest id given (SQLite's meta has it once jobs are purged)
    assert theirs == sorted([*(r for r in ours if r[0] != "last_job_id"), ("last_job_id", highest)], key=repr)
    for table, (ours, theirs) in rows.items():
        assert ours == theirs, table
    assert {table for table, (ours, _) in rows.items() if ours} >= FILLED
    assert any(len(r[2]) > 1024 * 1024 for r in rows["blob_chunks"][0])  # the task's result, in 4 MiB chunks

    # The table of counts: every table, the same number on both sides; then the time it took.
    printed = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines() if line.split()[:1]}
    for table, (ours, _) in rows.items():
        assert printed[table] == [f"{len(ours):,}"] * 2, (table, done.stdout)
    assert " in " in done.stdout and "s: " in done.stdout
    # Ids go on from the largest given: the meta row (above), and the sequences of the tables PostgreSQL numbers.
    for table in ("groups", "tokens", "schedules"):
        next_id = pg_value(pg_database.url, f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))")
        assert next_id == pg_value(pg_database.url, f"SELECT MAX(id) FROM {table}") + 1, table
    # What the new brokers need is named, and nothing secret was put in the database.
    assert f"{data_dir / 'tls' / 'ca.key'}" in done.stdout and f"{data_dir / 'token'}" in done.stdout
    assert old_grid.credential.split("-", 2)[2] not in done.stdout + done.stderr


def test_a_broker_on_the_database_shows_the_same_grid(
    old_grid: OldGrid, pg_database: PgDatabase, tmp_path: Path
) -> None:
    done = migrate(tmp_path, "--from", str(copy_of(old_grid, tmp_path)), "--to", pg_database.url)
    assert done.returncode == 0, done.stderr
    grid = Grid(tmp_path / "new")
    try:
        # A new broker machine: an empty data dir given the old one's CA and token, as the command said.
        grid.own_ca = True
        grid.data_dir.mkdir(parents=True, mode=0o700)
        (grid.data_dir / "tls").mkdir(mode=0o700)
        for name in ("tls/ca.pem", "tls/ca.key", "token"):
            shutil.copy2(old_grid.data_dir / name, grid.data_dir / name)
        del grid.env["GRIDD_TOKEN"]
        grid.start_broker(flags=["--store", pg_database.url])
        grid.env["GRIDD_TOKEN"] = old_grid.credential  # the credentials handed out before still work

        assert {job: stored(grid.show(job)) for job in old_grid.shown} == {
            job: stored(record) for job, record in old_grid.shown.items()
        }
        assert [stored(j) for j in grid.json("jobs", "--limit", "0")] == [stored(j) for j in old_grid.listed]
        for job, (out, err) in old_grid.logs.items():
            assert (grid.ok("logs", job), grid.ok("logs", job, "--stderr")) == (out, err)
        assert grid.json("schedule", "list") == old_grid.schedules
        assert grid.json("bundle", "list") == old_grid.bundles
        with gridd.connect_sync(grid.addr, old_grid.credential) as client:
            assert client.handle(old_grid.task, sample.blob_of).result() == old_grid.blob
        as_alice = grid.cli("jobs", "--json", env={**grid.env, "GRIDD_TOKEN": old_grid.alice})
        assert as_alice.returncode == 0, as_alice.stderr
        assert [j["owner"] for j in json.loads(as_alice.stdout)] == ["alice"]

        new = grid.submit("echo", "new")
        assert int(new) > max(int(job) for job in old_grid.shown)
        grid.start_worker("w2")
        assert grid.wait_state(new, "succeeded")["exit_code"] == 0
    finally:
        grid.close()


def test_a_target_that_holds_jobs_is_refused_and_left_as_it_was(
    old_grid: OldGrid, pg_database: PgDatabase, tmp_path: Path
) -> None:
    data_dir = copy_of(old_grid, tmp_path)
    assert migrate(tmp_path, "--from", str(data_dir), "--to", pg_database.url).returncode == 0
    before = every_row(data_dir / "gridd.db", pg_database.url)

    again = migrate(tmp_path, "--from", str(data_dir), "--to", pg_database.url)
    assert again.returncode == 1
    assert again.stderr.splitlines()[-1] == (
        f"gridd: the target holds {len(old_grid.shown)} jobs; migrate only into an empty database"
    )
    assert every_row(data_dir / "gridd.db", pg_database.url) == before


def test_a_target_another_session_uses_is_refused(old_grid: OldGrid, pg_database: PgDatabase, tmp_path: Path) -> None:
    """A broker already on the database would not know the jobs the copy brings: only an unused one is taken."""
    data_dir = copy_of(old_grid, tmp_path)
    with psycopg.connect(pg_database.url, application_name="gridd broker") as other:
        refused = migrate(tmp_path, "--from", str(data_dir), "--to", pg_database.url)
        assert other.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        "gridd: the target database has 1 other session (gridd broker): stop its brokers (a broker started before "
        "the copy would not lease the jobs it brings), then migrate"
    )
    assert migrate(tmp_path, "--from", str(data_dir), "--to", pg_database.url).returncode == 0


def test_a_data_dir_a_broker_runs_on_is_refused(old_grid: OldGrid, pg_database: PgDatabase, tmp_path: Path) -> None:
    grid = Grid(tmp_path)
    grid.data_dir = copy_of(old_grid, tmp_path)
    grid.own_ca = True
    grid.env["GRIDD_TOKEN"] = old_grid.credential
    try:
        grid.start_broker()
        refused = migrate(tmp_path, "--from", str(grid.data_dir), "--to", pg_database.url)
        assert refused.returncode == 1
        assert refused.stderr.splitlines()[-1] == (
            f"gridd: a broker (pid {grid.broker.pid}) is running on the data dir {grid.data_dir}: stop it, then migrate"
        )
        assert pg_value(pg_database.url, "SELECT count(*) FROM jobs") == 0
        assert grid.show(next(iter(old_grid.shown)))["id"]  # the broker serves on, untouched
    finally:
        grid.close()


def test_an_older_sqlite_schema_is_brought_up_first_and_a_newer_one_refused(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with sqlite3.connect(data_dir / "gridd.db") as db:
        for number, script in enumerate(MIGRATIONS[:-1], start=1):
            db.executescript(f"{script}\nPRAGMA user_version = {number};")
        db.execute(
            "INSERT INTO jobs (id, state, queue, priority, max_attempts, spec, submitted_ms)"
            " VALUES (7, 'succeeded', 'default', 0, 3, x'80', 1000)"
        )
    done = migrate(tmp_path, "--from", str(data_dir), "--to", pg_database.url)
    assert done.returncode == 0, done.stderr
    assert f"brought from {len(MIGRATIONS) - 1} to {len(MIGRATIONS)} first" in done.stdout
    assert pg_value(pg_database.url, "SELECT id FROM jobs") == 7
    assert pg_value(pg_database.url, "SELECT value FROM meta WHERE key = 'last_job_id'") == 7

    with sqlite3.connect(data_dir / "gridd.db") as db:
        db.execute("PRAGMA user_version = 99")
    newer = migrate(tmp_path, "--from", str(data_dir), "--to", pg_database.url)
    assert newer.returncode == 1
    assert newer.stderr.splitlines()[-1].endswith(
        f"has schema 99, newer than this gridd's ({len(MIGRATIONS)}): migrate it with the gridd that made it"
    )


def test_a_copy_that_fails_half_way_leaves_nothing(pg_database: PgDatabase, tmp_path: Path) -> None:
    """All or nothing: attempts are copied before jobs; a job PostgreSQL refuses (SQLite does not enforce the
    foreign key to its group) rolls them back too, and the target stays empty, ready for another try."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with sqlite3.connect(data_dir / "gridd.db") as db:
        db.executescript("".join(f"{script}\n" for script in MIGRATIONS) + f"PRAGMA user_version = {len(MIGRATIONS)};")
        db.execute(
            "INSERT INTO jobs (id, state, queue, priority, max_attempts, spec, submitted_ms, group_id)"
            " VALUES (1, 'succeeded', 'default', 0, 3, x'80', 1000, 99)"
        )
        db.execute("INSERT INTO attempts (job_id, lease, attempt, ended_ms, outcome) VALUES (1, 1, 1, 2, 'succeeded')")
    failed = migrate(tmp_path, "--from", str(data_dir), "--to", pg_database.url)
    assert failed.returncode == 1
    line = failed.stderr.splitlines()[-1]
    assert "foreign key" in line and line.endswith("nothing was copied"), line
    assert "gridd: attempts: 1 row" in failed.stderr  # it was copied, then rolled back
    for table in ("attempts", "jobs", "meta"):
        assert pg_value(pg_database.url, f"SELECT count(*) FROM {table}") == 0, table


def test_bad_input_is_one_line_and_its_exit_code(old_grid: OldGrid, tmp_path: Path) -> None:
    data_dir = copy_of(old_grid, tmp_path)
    usage = migrate(tmp_path, "--from", str(data_dir), "--to", "sqlite:///tmp/x.db")
    assert usage.returncode == 2 and "--to takes a postgresql://USER@HOST/DB URL" in usage.stderr
    unreachable = migrate(tmp_path, "--from", str(data_dir), "--to", "postgresql://gridd:secret@127.0.0.1:1/grid")
    assert unreachable.returncode == 3
    (line,) = [x for x in unreachable.stderr.splitlines() if not x.startswith("gridd: copying")]
    assert line.startswith("gridd: cannot connect to the database") and "secret" not in unreachable.stderr
    missing = migrate(tmp_path, "--from", str(tmp_path / "nowhere"), "--to", "postgresql://gridd@127.0.0.1:1/grid")
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[-1] == (
        f"gridd: no gridd database in {tmp_path / 'nowhere'} (its gridd.db): is it a broker's data dir?"
    )

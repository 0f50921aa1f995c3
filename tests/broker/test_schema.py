"""A released migration is never edited: a database an older gridd made was migrated by the text that
gridd had, so each released script keeps its text to the byte (its states are now written from the enum,
which must not change them). A change of schema is a new migration, appended."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from gridd.broker.schema import MIGRATIONS, migrate
from gridd.broker.schema import postgresql as pg
from tests.pg_fixtures import PgDatabase

RELEASED = [  # sha256 of each released migration's text, first 16 hex digits
    "167c7776c0a3703f",
    "c50dfdc2fa791a3a",
    "f6628b90be6540cf",
    "7993f3ba897f7502",
    "df76746790083812",
    "71e95878258fc189",
    "a544ec9fcac642f1",
    "8da6bd3fc323f319",
    "46e791738184b1f6",
    "f02116c3221bf88e",  # 10-13: released at stop 14 (cause-aware retries, keys, delayed jobs, schedules)
    "719ecdfed3faf555",
    "6d31850936b8af77",
    "e1f062151efb6c50",
    "096068a7e669fc9a",  # 14: released at stop 15 (gang jobs)
    "f39df48589a3fdae",  # 15: jobs_finished's WHERE as comparisons, not an IN list (issue 20)
]
RELEASED_POSTGRESQL = [  # the same, for PostgreSQL's list (its first is SQLite's 1-13 in one)
    "04eeabf9ad694c7b",  # 13 and 14: released at stop 15
    "a301e40e81d2d238",
    "f39df48589a3fdae",  # 15: as SQLite's 15, the same text
]


def test_every_released_migration_keeps_its_text_to_the_byte() -> None:
    digests = [hashlib.sha256(script.encode()).hexdigest()[:16] for script in MIGRATIONS]
    assert digests[: len(RELEASED)] == RELEASED
    digests = [hashlib.sha256(script.encode()).hexdigest()[:16] for script in pg.MIGRATIONS]
    assert digests[: len(RELEASED_POSTGRESQL)] == RELEASED_POSTGRESQL


def test_postgresql_has_every_migration_sqlite_has_under_the_same_number() -> None:
    assert pg.FIRST + len(pg.MIGRATIONS) - 1 == pg.LATEST == len(MIGRATIONS)


def test_both_databases_have_the_same_tables_and_columns(tmp_path: Path, pg_database: PgDatabase) -> None:
    """One SQL serves both (store/sql.py): every table and column SQLite's schema has, PostgreSQL's has."""
    db = sqlite3.connect(tmp_path / "gridd.db")
    migrate(db)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    in_sqlite = {(t, r[1]) for t in tables for r in db.execute(f"PRAGMA table_info({t})")}
    listed = pg_database.psql(
        "SELECT table_name || '.' || column_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name != 'gridd_schema'"
    )
    in_postgresql = {tuple(line.split(".", 1)) for line in listed.splitlines()}
    assert in_postgresql == in_sqlite

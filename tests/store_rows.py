"""Rows of a test broker's store read beside it, whichever backend the test runs on: its SQLite file (read
only), or the test's PostgreSQL database. For tests that check what the database itself holds."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg

from tests.conftest import STORE


def stored(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    """The rows `sql` (read by both databases) finds in the store of the broker in `data_dir`."""
    if STORE["url"] is not None:
        with psycopg.connect(STORE["url"]) as pg:
            return pg.execute(sql.encode()).fetchall()
    with sqlite3.connect(f"file:{data_dir / 'gridd.db'}?mode=ro", uri=True) as db:
        return db.execute(sql).fetchall()

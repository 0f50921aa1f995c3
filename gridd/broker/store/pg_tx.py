"""Tx on a psycopg connection: the use cases' SQL, written once for both databases (sql.py), made
PostgreSQL's as each statement is first prepared.

Rules: each statement's text is translated once and kept: every Fragment's SQLite text is replaced by its
PostgreSQL text, `%` doubled (psycopg reads `%s`), and `?` becomes `%s`. A statement has no `?` other than its
placeholders (no `?` in a string literal or a comment). Lists of ids and strings are arrays (`Tx.ids`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from gridd.broker.store.sql import FRAGMENTS, Cursor, Dialect

_translated: dict[str, bytes] = {}


def translate(sql: str) -> bytes:
    """The statement as PostgreSQL reads it (bytes: psycopg takes them as they are)."""
    found = _translated.get(sql)
    if found is None:
        text = sql
        for sqlite_text in sorted(FRAGMENTS, key=len, reverse=True):  # a longer one may hold a shorter one
            if sqlite_text in text:
                text = text.replace(sqlite_text, FRAGMENTS[sqlite_text])
        text = _PLACEHOLDER.sub("%s", text.replace("%", "%%"))
        found = _translated[sql] = text.encode()
    return found


_PLACEHOLDER = re.compile(r"\?")


class PgTx:
    """The transaction a use case runs in, on PostgreSQL."""

    dialect: Dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor:
        return self.conn.execute(translate(sql), params or None)

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Cursor:
        cursor = self.conn.cursor()
        batch = list(params)
        if batch:
            cursor.executemany(translate(sql), batch)
        return cursor

    def each(self, sql: str, params: Iterable[Sequence[Any]], /) -> list[Any]:
        batch = list(params)
        if not batch:
            return []
        cursor = self.conn.cursor()
        cursor.executemany(translate(sql), batch, returning=True)  # pipelined: one round trip
        found: list[Any] = []
        while True:
            found += cursor.fetchall()
            if not cursor.nextset():
                return found

    def insert_rows(self, sql: str, rows: Sequence[Sequence[Any]], constants: Sequence[Any] = (), /) -> None:
        if rows:
            self.conn.execute(translate(sql), [*constants, *(list(column) for column in zip(*rows, strict=True))])

    def ids(self, ids: Iterable[int]) -> list[int]:
        return list(ids)

    def texts(self, texts: Iterable[str]) -> list[str]:
        return list(texts)

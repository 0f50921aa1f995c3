"""Tx on a psycopg connection: the use cases' SQL, written once for both databases (sql.py), made
PostgreSQL's as each statement is first prepared.

Rules: each statement's text is translated once and kept: every Fragment's SQLite text is replaced by its
PostgreSQL text, `%` doubled (psycopg reads `%s`), and `?` becomes `%s`. A statement has no `?` other than its
placeholders (no `?` in a string literal or a comment). Lists of ids and strings, and the columns of many
rows (`insert_rows`, `update_rows`), are arrays, sent as their text (`array`; bytes as psycopg's binary
array) and cast by the statement.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from gridd.broker.store.sql import FRAGMENTS, Cursor, Dialect, RowUpdate, row_types

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
        self.notices: list[str] = []  # payloads to NOTIFY the other brokers of, with the COMMIT (pg_commit.py)

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor:
        return self.conn.execute(translate(sql), params or None)

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Cursor:
        cursor = self.conn.cursor()
        batch = list(params)
        if batch:
            cursor.executemany(translate(sql), batch)
        return cursor

    def update_rows(self, update: RowUpdate, rows: Sequence[Sequence[Any]], /) -> list[Any]:
        if not rows:
            return []
        columns = _columns(update.kinds, rows)
        cursor = self.conn.execute(translate(update.postgresql), columns, prepare=False)  # planned for today's table
        return cursor.fetchall() if update.returns else []

    def insert_rows(self, sql: str, rows: Sequence[Sequence[Any]], constants: Sequence[Any] = (), /) -> None:
        if rows:
            self.conn.execute(translate(sql), [*constants, *_columns(row_types(sql), rows)])

    def ids(self, ids: Iterable[int]) -> str:
        return array("bigint", ids)

    def texts(self, texts: Iterable[str]) -> str:
        return array("text", texts)


def _columns(kinds: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str | list[Any]]:
    """The columns of `rows`, one parameter each, of these PostgreSQL types: an array's text, or for bytes
    (outputs of up to a MiB each) the list itself, which psycopg sends in binary, not doubled as hex."""
    columns = zip(kinds, zip(*rows, strict=True), strict=True)
    return [list(values) if kind == "bytea" else array(kind, values) for kind, values in columns]


def array(kind: str, values: Iterable[Any]) -> str:
    """The text of an array of `kind`, for a parameter the statement casts to `kind[]`: made by str.join,
    4-6 times cheaper than psycopg's own list dumper, which dumps element by element in Python (~36 µs for
    64 ids)."""
    return "{" + ",".join(map(_ELEMENT[kind], values)) + "}"


def _number(value: Any) -> str:
    return "NULL" if value is None else str(value)


def _text(value: str | None) -> str:
    return "NULL" if value is None else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_ELEMENT = {"bigint": _number, "int": _number, "float8": _number, "text": _text}

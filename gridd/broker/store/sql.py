"""What every module of the store shares: the transaction a use case runs in (`Tx`), SQL text that differs
between the two databases (`Fragment`), a statement's rows, and job states as SQL literals.

Rules: a use case is written once, in SQL both SQLite and PostgreSQL read: `?` placeholders, `ON CONFLICT`
upserts, integers 0/1 for flags. Where the two differ, the statement names a Fragment (written as SQLite's
text, so it reads as plain SQL), and the PostgreSQL transaction (pg_tx.py) puts PostgreSQL's text in its
place. A list of ids is one parameter, made by the transaction (`Tx.ids`): JSON text that SQLite's json_each
reads, an array for PostgreSQL. A state is written into SQL text only through `state` and `states`, from the
enum's members (constants, never input), so constant statements can still match a partial index's WHERE
word for word.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, Protocol

from gridd.protocol.states import JobState

Dialect = Literal["sqlite", "postgresql"]


class Cursor(Protocol):
    """What a statement gives back, the same from both drivers."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...

    def close(self) -> None: ...


class Tx(Protocol):
    """The transaction a use case runs in (one of a group commit's savepoints)."""

    dialect: Dialect

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor: ...

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Cursor: ...

    def update_rows(self, update: RowUpdate, rows: Sequence[Sequence[Any]], /) -> list[Any]:
        """`update` for each of `rows` (each row's values in the order of its columns): one statement on
        PostgreSQL. Returns what its RETURNING gives, in no particular order."""
        ...

    def insert_rows(self, sql: str, rows: Sequence[Sequence[Any]], constants: Sequence[Any] = (), /) -> None:
        """An INSERT of many rows whose VALUES are `rows_of(...)`: on SQLite statements of up to
        ROWS_PER_INSERT rows each, on PostgreSQL one statement that reads one array per column.
        `constants`: the values of the placeholders the statement has before its rows, once for all."""
        ...

    def ids(self, ids: Iterable[int]) -> Any:
        """Integers as one parameter, read by `{IDS}`."""
        ...

    def texts(self, texts: Iterable[str]) -> Any:
        """Strings as one parameter, read by `{TEXTS}`."""
        ...


class SQLiteTx:
    """Tx on a sqlite3 connection: its own methods, bound once (no call in between)."""

    dialect: Dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.execute = conn.execute
        self.executemany = conn.executemany

    def update_rows(self, update: RowUpdate, rows: Sequence[Sequence[Any]], /) -> list[Any]:
        order = update.order
        if not update.returns:
            self.conn.executemany(update.sqlite, ([row[i] for i in order] for row in rows))
            return []
        execute = self.conn.execute
        return [found for row in rows for found in execute(update.sqlite, [row[i] for i in order])]

    def insert_rows(self, sql: str, rows: Sequence[Sequence[Any]], constants: Sequence[Any] = (), /) -> None:
        # Not executemany: each run of a statement opens a cursor on the table and on every index of it, which
        # cost a job's INSERT more than writing its row and index entries (benchmarks/README.md, issue 20).
        # Sizes are powers of two, so that a table has at most a few statements in the connection's cache.
        execute, done = self.conn.execute, 0
        while done < len(rows):
            size = ROWS_PER_INSERT
            while size > len(rows) - done:
                size //= 2
            execute(_rows_at_once(sql, size), [*constants, *itertools.chain.from_iterable(rows[done : done + size])])
            done += size

    def ids(self, ids: Iterable[int]) -> str:
        return json.dumps(list(ids))

    def texts(self, texts: Iterable[str]) -> str:
        return json.dumps(list(texts))


# Rows one INSERT writes on SQLite (Tx.insert_rows): 64 jobs take 64 * 11 parameters, far under SQLite's limit
# of 32,766; more gain nothing measurable.
ROWS_PER_INSERT = 64


@functools.cache
def _rows_at_once(sql: str, count: int) -> str:
    """An INSERT of one row of `rows_of(...)` as one of `count` rows."""
    found = _rows_of(sql)
    return f"{sql[: found.start(1)]}{', '.join([found[1]] * count)}{sql[found.end(1) :]}"


@functools.cache
def row_types(sql: str) -> tuple[str, ...]:
    """The PostgreSQL types of the columns of an INSERT of `rows_of(...)`, as given to it."""
    return tuple(_rows_of(sql)[2].split(", "))


def _rows_of(sql: str) -> re.Match[str]:
    found = _ROWS_OF.search(sql)
    if found is None:
        raise ValueError(f"not an INSERT of rows_of(...): {sql!r}")
    return found


# rows_of's SQLite text: group 1 is one row's placeholders, group 2 the columns' types.
_ROWS_OF = re.compile(r"VALUES (\((?:\?, )*\?\)) /\* rows of ([\w, ]+) \*/")

# Every Fragment made, SQLite's text -> PostgreSQL's; pg_tx.py replaces them in each statement it prepares.
FRAGMENTS: dict[str, str] = {}


class Fragment(str):
    """A piece of SQL the two databases spell differently: a str of SQLite's text, so that statements built
    with it run on SQLite unchanged; PostgreSQL's text replaces it there. SQLite's text must be unique among
    fragments and must not occur in statements by chance (a comment may mark it)."""

    postgresql: str

    def __new__(cls, sqlite: str, postgresql: str) -> Fragment:
        if FRAGMENTS.get(sqlite, postgresql) != postgresql:
            raise ValueError(f"two fragments spell {sqlite!r} for SQLite")
        FRAGMENTS[sqlite] = postgresql
        self = super().__new__(cls, sqlite)
        self.postgresql = postgresql
        return self


def indexed_by(index: str) -> Fragment:
    """After a table's name: SQLite reads `index`. Without statistics (the broker runs no ANALYZE: taken of a
    new database, they would mislead it once the tables fill) its planner prefers an index on the state, and
    reads every job in that state, to a partial index of the few rows a query wants. PostgreSQL plans with
    the statistics its autovacuum keeps."""
    return Fragment(f" INDEXED BY {index}", "")


# `id IN ({IDS})`, with `Tx.ids(...)` as its parameter; `{TEXTS}` the same for strings.
IDS = Fragment("SELECT value FROM json_each(?)", "SELECT unnest(?::bigint[])")
TEXTS = Fragment("SELECT value FROM json_each(?) /* texts */", "SELECT unnest(?::text[])")


def rows_of(*types: str) -> Fragment:
    """The VALUES of an INSERT of many rows (Tx.insert_rows), a column of each PostgreSQL type: there, one
    array per column, unnested (a statement per row costs PostgreSQL a parse, a bind and an execute each)."""
    return Fragment(
        f"VALUES ({', '.join('?' * len(types))}) /* rows of {', '.join(types)} */",
        f"SELECT * FROM unnest({', '.join(f'?::{t}[]' for t in types)})",  # noqa: S608 - types: the store's constants
    )


class RowUpdate:
    """An UPDATE of many rows, each with values of its own (Tx.update_rows), written once: `:name` in the text
    is the row's value of that column; `columns` name them, in the order of each row's values, with their
    PostgreSQL types. SQLite runs it once per row (`?` for each `:name`); PostgreSQL runs one statement,
    `FROM unnest(one array per column) AS u` joined on the text's WHERE (each `:name` becomes `u._name`).

    Write the state a row leaves as a value too (`state = :was`), not as a constant: a constant state would
    let PostgreSQL's planner scan the partial index of that state, which, before it has statistics of the
    table (a new database, or one that just filled), it guesses holds one row, and hash every job in that
    state on each call. Joined on the primary key alone, its plan follows the table's size, statistics or
    not; PostgreSQL plans it at each run (psycopg's prepare=False), so a table that grew since is never
    read with a small table's plan."""

    def __init__(self, text: str, /, **columns: str) -> None:
        names = list(columns)
        used = _NAMED.findall(text)
        if unknown := set(used) - set(names):
            raise ValueError(f"{sorted(unknown)} are not among the columns {names}")
        head, where, tail = text.partition(" WHERE ")
        if not where or "?" in text:
            raise ValueError("an update of rows joins on its WHERE and takes every value from its rows")
        self.sqlite = _NAMED.sub("?", text)
        self.order = [names.index(name) for name in used]
        arrays = ", ".join(f"?::{kind}[]" for kind in columns.values())
        joined = f"{head} FROM unnest({arrays}) AS u({', '.join('_' + name for name in names)}) WHERE {tail}"
        self.postgresql = _NAMED.sub(r"u._\1", joined)
        self.returns = " RETURNING " in text
        self.kinds = list(columns.values())


_NAMED = re.compile(r"(?<![:\w]):([a-z_]+)")


# Locks the rows a transaction reads to decide what it writes (other brokers on the same PostgreSQL wait);
# SQLite has one writer, whose transactions never interleave.
FOR_UPDATE = Fragment(" /* for update */", " FOR UPDATE")
# The same, the rows locked in the order of their ids, so that two brokers locking several jobs each never
# wait for each other in a circle (SQLite's rows stay unsorted: no sort on its hot paths).
BY_ID_FOR_UPDATE = Fragment(" /* by id, for update */", " ORDER BY id FOR UPDATE")
# For leasing: rows another broker is leasing right now are skipped, not waited for.
SKIP_LOCKED = Fragment(" /* for update skip locked */", " FOR UPDATE SKIP LOCKED")
# A row a transaction relies on staying (a blob a new job names, the group it joins): another broker's purge,
# which locks it FOR UPDATE before removing it, waits until this transaction ends.
FOR_SHARE = Fragment(" /* for share */", " FOR SHARE")


def rows(db: Tx, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    return db.execute(sql, params).fetchall()


def state(member: JobState) -> str:
    """A state as an SQL string literal (the member's name in single quotes)."""
    return f"'{JobState(member)}'"


def states(members: Iterable[JobState]) -> str:
    """States as an SQL list of literals, for IN, in the order given."""
    return "(" + ", ".join(state(m) for m in members) + ")"

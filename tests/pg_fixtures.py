"""pytest fixtures for PostgreSQL tests: one throwaway server per test session, one fresh database per test.

`pg_server` starts lazily, the first time a test asks for it, so a run without PostgreSQL tests pays nothing;
it is stopped (by PID, see tests/pgserver.py) when the session ends. `pg_database` is a new database per test,
copied with CREATE DATABASE from the template database `TEMPLATE` (a copy costs tens of milliseconds), and
dropped after the test: tests are isolated from each other without a server each. A store that wants its
schema in every test database installs it once into `TEMPLATE` through `pg_server`.

The server runs with fsync off: no test here crashes the machine, the only failure fsync guards against
(a killed postgres or broker loses nothing that was committed, with fsync on or off).

If the server cannot start, the test fails with the server's log: it is never skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from gridd.broker.schema.postgresql import migrate
from gridd.broker.store.pg_commit import connect
from tests.pgserver import PgServer

TEMPLATE = "gridd_template"
_numbers = itertools.count(1)


@dataclass(frozen=True)
class PgDatabase:
    """One test's database on the session's server."""

    server: PgServer
    name: str

    @property
    def url(self) -> str:
        """libpq URL over TCP on 127.0.0.1 (what `gridd broker --store` takes)."""
        return self.server.url(self.name)

    def psql(self, sql: str) -> str:
        return self.server.psql(sql, self.name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    with PgServer(fsync=False) as server:
        server.create_database(TEMPLATE)
        _install_schema(server.url(TEMPLATE))
        yield server


def _install_schema(url: str) -> None:
    """gridd's schema in the template, so that every test database starts with it (as a broker makes it)."""
    conn = connect(url)
    try:
        migrate(conn)
    finally:
        conn.close()


@pytest.fixture
def pg_database(pg_server: PgServer) -> Iterator[PgDatabase]:
    database = PgDatabase(pg_server, f"test_{next(_numbers)}")
    pg_server.create_database(database.name, template=TEMPLATE)
    try:
        yield database
    finally:
        pg_server.drop_database(database.name)

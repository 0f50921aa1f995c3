"""The throwaway PostgreSQL server the PostgreSQL tests run on (tests/pgserver.py, tests/pg_fixtures.py)."""

from __future__ import annotations

import socket
import subprocess

import pytest

from tests.pg_fixtures import TEMPLATE, PgDatabase
from tests.pgserver import PgServer, PgServerError, free_port


def test_the_server_answers_queries_over_tcp_and_its_socket(pg_server: PgServer) -> None:
    assert pg_server.psql("SELECT 6 * 7") == "42"
    assert pg_server.psql("SHOW listen_addresses") == "127.0.0.1"
    over_socket = subprocess.run(
        [str(pg_server.bin_dir / "psql"), "-X", "-A", "-t", "-d", pg_server.socket_url(), "-c", "SELECT 1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (over_socket.returncode, over_socket.stdout.strip()) == (0, "1"), over_socket.stderr


def test_the_server_never_runs_as_root(pg_server: PgServer) -> None:
    assert pg_server.process is not None
    assert pg_server.process.uid() != 0  # postgres refuses root; as root we run it as another user
    assert pg_server.data_dir.stat().st_uid == pg_server.process.uid()


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_has_a_database_of_its_own(pg_database: PgDatabase, run: int) -> None:
    # Both runs create the same table: the second would fail if it saw the first one's database.
    pg_database.psql("CREATE TABLE marker (run integer NOT NULL)")
    pg_database.psql(f"INSERT INTO marker VALUES ({run})")
    assert pg_database.psql("SELECT count(*) FROM marker") == "1"
    assert pg_database.name != TEMPLATE
    assert pg_database.server.psql("SELECT to_regclass('marker') IS NULL", TEMPLATE) == "t"  # template untouched


def test_a_stopped_server_is_gone() -> None:
    server = PgServer(fsync=False)
    server.start()
    process, port, root = server.process, server.port, server.root
    assert process is not None and process.alive() and root is not None
    server.stop()

    assert not process.alive()
    assert not root.exists()
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))
    with socket.socket() as s:  # free for another server (which, like postgres, sets SO_REUSEADDR)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


def test_a_server_that_cannot_start_raises_with_its_log() -> None:
    with socket.socket() as taken:
        port = free_port()
        taken.bind(("127.0.0.1", port))
        taken.listen()
        server = PgServer(port=port, fsync=False, start_timeout_s=30)
        with pytest.raises(PgServerError, match="Address already in use") as raised:
            server.start()
    assert "server log:" in str(raised.value)
    assert server.root is None  # stopped and cleaned up, though it never came up

"""Errors that surface through task groups reach a person as the one line of their cause."""

from __future__ import annotations

import socket

from gridd.protocol.errors import ConnectionLost, StorageFailed
from tests.e2e.conftest import Grid


def test_a_broker_on_a_garbage_database_says_so_in_one_line_and_leaves_the_file_alone(grid: Grid) -> None:
    grid.data_dir.mkdir(parents=True, mode=0o700)  # private, as a broker makes it: nothing to tighten
    garbage = bytes(range(256)) * 40  # not an SQLite file
    (grid.data_dir / "gridd.db").write_bytes(garbage)
    (grid.data_dir / "gridd.db").chmod(0o600)
    result = grid.run_broker()
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1
    assert len(lines) == 1, lines
    assert "ExceptionGroup" not in lines[0] and "internal error" not in lines[0], lines
    assert "database" in lines[0] and "not a database" in lines[0], lines
    assert (grid.data_dir / "gridd.db").read_bytes() == garbage  # refused, never overwritten


def test_a_broker_whose_port_is_taken_says_so_in_one_line(grid: Grid) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = grid.run_broker(f"127.0.0.1:{port}")
    said = [line for line in result.stderr.decode().splitlines() if line.startswith("gridd:")]
    assert result.returncode == 1
    assert said == [f"gridd: cannot listen on 127.0.0.1:{port} (--listen): Address already in use"], said


def test_the_cause_inside_nested_groups_is_what_a_person_hears_gridd_errors_first() -> None:
    from gridd.cli.main import root_cause

    lost = ConnectionLost("the broker at 127.0.0.1:1 went away")
    storage = StorageFailed("cannot open the database")
    nested = BaseExceptionGroup("outer", [ValueError("a bug"), ExceptionGroup("inner", [storage])])
    assert root_cause(nested) is storage
    assert root_cause(ExceptionGroup("one", [lost])) is lost
    bug = KeyError("x")
    assert root_cause(ExceptionGroup("g", [bug])) is bug
    assert root_cause(lost) is lost

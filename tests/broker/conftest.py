"""The broker's and the store's tests run on both store backends: SQLite, and PostgreSQL on a fresh database
of the session's throwaway server (tests/pg_fixtures.py). Modules about one backend's own machinery run once."""

from __future__ import annotations

import pytest

from tests.conftest import parametrize_backends

# Run once: SQLite's group commit and fsync, the schemas' own checks (which cover both lists), pure code, and
# the connection layer (frames, TLS, limits on peers), which asks the store nothing a store test does not.
SQLITE_ONLY = frozenset(
    {
        "test_group_commit",
        "test_schema",
        "test_transitions",
        "test_changes",
        "test_wire_safety",
        "test_connection_limits",
        "test_tls",
        "test_tls_files",
    }
)
# Several brokers on one store: only PostgreSQL can be shared.
POSTGRESQL_ONLY = frozenset({"test_two_brokers", "test_pg_failover", "test_gangs_shared"})


@pytest.fixture(autouse=True)
def _on_backend(store_backend: str) -> str:
    return store_backend


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends(*names): run this test on these store backends only (a comment says why)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    only = metafunc.definition.get_closest_marker("backends")
    if only is not None and "store_backend" in metafunc.fixturenames:
        metafunc.parametrize("store_backend", only.args, indirect=True)
        return
    parametrize_backends(metafunc, SQLITE_ONLY, POSTGRESQL_ONLY)

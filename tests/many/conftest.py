"""The many-jobs tests (dependencies, groups, --max-running, each/array) run on both store backends, as the
broker's do (tests/broker/conftest.py): SQLite, and PostgreSQL on a fresh database of the session's server."""

from __future__ import annotations

import pytest

from tests.conftest import parametrize_backends


@pytest.fixture(autouse=True)
def _on_backend(store_backend: str) -> str:
    return store_backend


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_backends(metafunc)

"""Each backend (SQLite, PostgreSQL) implements the store's interface (gridd/broker/store/interface.py): every
use case the broker may ask for is there, async, with the interface's signature. mypy checks the same at
each backend's `_implements`; this catches a use case added to one side only when mypy is not run."""

from __future__ import annotations

import inspect
from pathlib import Path

from gridd.broker.store import SQLiteStore, Store
from gridd.broker.store.pg_store import PostgresStore
from tests.broker.test_store import store_at


def use_cases() -> list[str]:
    return [name for name, member in vars(Store).items() if inspect.iscoroutinefunction(member)]


async def test_the_store_offers_every_use_case_of_the_interface_with_its_signature(
    tmp_path: Path, store_backend: str
) -> None:
    assert len(use_cases()) > 30
    async with store_at(tmp_path) as store:
        assert isinstance(store, {"sqlite": SQLiteStore, "postgresql": PostgresStore}[store_backend])
        for name in use_cases():
            method = getattr(store, name, None)
            assert method is not None, f"the {store_backend} store lacks {name}"
            assert inspect.iscoroutinefunction(method), f"{name} is not async"
            wanted = inspect.signature(getattr(Store, name)).replace(return_annotation=inspect.Signature.empty)
            params = list(wanted.parameters.values())[1:]  # without self
            got = inspect.signature(method).replace(return_annotation=inspect.Signature.empty)
            assert got == wanted.replace(parameters=params), f"{name}: {got} is not {wanted}"

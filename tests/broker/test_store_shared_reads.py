"""Two stores opened on one database, as two brokers in front of one PostgreSQL have (on SQLite: two on one
file): role tokens made, used and revoked through either are seen by the other at once, and retention run by
both at once removes each job once and a blob only when no job is left that names it."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from gridd.broker.store import Store, open_store
from gridd.protocol.errors import InvalidRequest, UnknownBlob
from gridd.protocol.messages import JobSpec, TaskCall
from tests.clock import FakeClock
from tests.conftest import store_location

A = TypeVar("A")
B = TypeVar("B")

ROUNDS = 20
PAIRS = 20


@asynccontextmanager
async def two_stores(tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """Two independent stores (connections, group commits) on the test's one database."""
    with anyio.fail_after(60):
        async with open_store(store_location(tmp_path)) as a, open_store(store_location(tmp_path)) as b:
            yield a, b


async def both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Two calls at once (each store commits in its own thread): both results, in order."""
    results: dict[int, Any] = {}

    async def run(i: int, call: Awaitable[Any]) -> None:
        results[i] = await call

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, 0, first)
        tg.start_soon(run, 1, second)
    return results[0], results[1]


async def test_a_token_revoked_through_one_store_is_refused_by_the_other_at_once(tmp_path: Path) -> None:
    async with two_stores(tmp_path) as (a, b):
        digest = hashlib.sha256(b"secret").hexdigest()
        made = await a.create_token("ci", "submit", ["build"], digest, 1_000, None)
        seen = await b.find_token(digest)
        assert seen is not None and seen.view == made and seen.view.revoked_ms is None
        await a.revoke_token("ci", 2_000)
        seen = await b.find_token(digest)
        assert seen is not None and seen.view.revoked_ms == 2_000
        # Its name is free again through either; the old secret then finds nothing.
        await b.create_token("ci", "read", [], hashlib.sha256(b"new").hexdigest(), 3_000, None)
        assert await a.find_token(digest) is None
        assert [t.role for t in await a.list_tokens()] == ["read"]


async def test_one_name_made_through_two_stores_at_once_is_one_token(tmp_path: Path) -> None:
    async with two_stores(tmp_path) as (a, b):
        for i in range(ROUNDS):
            name = f"t{i}"
            outcomes = await both(_make(a, name, "a"), _make(b, name, "b"))
            assert sorted(outcomes) == ["made", "refused"]
        assert len(await b.list_tokens()) == ROUNDS


async def test_token_use_recorded_by_two_stores_at_once_keeps_the_latest(tmp_path: Path) -> None:
    async with two_stores(tmp_path) as (a, b):
        rows = [
            await a.create_token(f"t{i}", "read", [], hashlib.sha256(f"t{i}".encode()).hexdigest(), 0, None)
            for i in range(4)
        ]
        ids = [
            found.id for i in range(4) if (found := await a.find_token(hashlib.sha256(f"t{i}".encode()).hexdigest()))
        ]
        assert len(ids) == len(rows)
        for ms in range(1, ROUNDS + 1):
            # Each records every token, in opposite orders; one of them a moment older than the other.
            await both(
                a.touch_tokens([(ms * 10, token) for token in ids]),
                b.touch_tokens([(ms * 10 - 5, token) for token in reversed(ids)]),
            )
            assert {t.last_used_ms for t in await b.list_tokens()} == {ms * 10}
        await a.touch_tokens([(5, ids[0])])  # an older use recorded late never turns the time back
        assert {t.last_used_ms for t in await a.list_tokens()} == {ROUNDS * 10}


async def test_retention_by_two_stores_at_once_removes_each_job_once_and_keeps_named_blobs(tmp_path: Path) -> None:
    clock = FakeClock()
    async with two_stores(tmp_path) as (a, b):
        kept = await _blob(a, clock, b"kept by a job left")
        plain = await _submit(a, clock, [JobSpec(argv=["true"], queue="nobody")] * 60)
        named = await _submit(b, clock, [_task(kept)] * 9)
        (left,) = await _submit(a, clock, [_task(kept)])  # stays queued: its blob must stay
        await _cancel(a, clock, plain + named)
        # Pairs of jobs naming a blob of their own, the two finishing together: the two stores purging one
        # job each must not each leave the blob to the other.
        pairs: list[tuple[str, list[str]]] = []
        for i in range(PAIRS):
            blob = await _blob(b, clock, f"pair {i}".encode())
            pair = await _submit(a, clock, [_task(blob)] * 2)
            await _cancel(b, clock, pair)
            pairs.append((blob, pair))
        finished = plain + named + [job for _, pair in pairs for job in pair]

        removed: list[str] = []
        for _ in range(len(finished)):  # bounded: each round removes something until none is left
            got_a, got_b = await both(a.purge_finished(clock.now_ms() + 1, 1), b.purge_finished(clock.now_ms() + 1, 1))
            removed += [r[0] for r in (*got_a, *got_b)]
            if not got_a and not got_b:
                break
        assert sorted(removed, key=int) == sorted(finished, key=int)  # each once, every one
        assert [j.id for j, _ in [await b.get_job(left)]] == [left]
        assert (await a.get_blob(kept, 0))[0] == len(b"kept by a job left")
        for blob, _ in pairs:
            with pytest.raises(UnknownBlob):
                await b.get_blob(blob, 0)
        # A new job still gets an id past every id given (retention keeps the largest).
        (newest,) = await _submit(b, clock, [JobSpec(argv=["true"])])
        assert int(newest) == int(finished[-1]) + 1


async def _cancel(store: Store, clock: FakeClock, job_ids: list[str]) -> None:
    clock.advance(1)
    outcomes, _, _, _ = await store.control_jobs("cancel", job_ids, clock.now_ms())
    assert {o.code for o in outcomes} == {0}


async def _make(store: Store, name: str, secret: str) -> str:
    try:
        await store.create_token(name, "submit", [], hashlib.sha256(f"{name}{secret}".encode()).hexdigest(), 1, None)
    except InvalidRequest:
        return "refused"
    return "made"


async def _blob(store: Store, clock: FakeClock, data: bytes) -> str:
    blob = hashlib.sha256(data).hexdigest()
    assert await store.put_blob(blob, len(data), 0, data, clock.now_ms()) == (len(data), True)
    return blob


def _task(blob: str) -> JobSpec:
    return JobSpec(argv=["t:f"], queue="nobody", task=TaskCall(name="t:f", args_blob=blob))


async def _submit(store: Store, clock: FakeClock, specs: list[JobSpec]) -> list[str]:
    changed, _ = await store.submit_jobs(specs, clock.now_ms())
    return [t.job_id for t in changed]

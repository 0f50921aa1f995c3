"""The tests' one polling helper: it returns what it waited for, stops at its deadline, and says what it
awaited and the last value it saw."""

from __future__ import annotations

import time

import anyio
import pytest

from tests.polling import eventually, wait_until


async def test_eventually_returns_the_value_that_ended_the_wait_and_takes_sync_or_async_checks() -> None:
    seen: list[int] = []

    def count() -> int:
        seen.append(len(seen))
        return seen[-1]

    async def async_count() -> int:
        return count()

    assert await eventually(count, holds=lambda n: n >= 3) == 3
    assert await eventually(async_count, holds=lambda n: n >= 6) == 6


async def test_eventually_fails_at_its_deadline_naming_what_it_awaited_and_the_last_value() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError) as failed:
        await eventually(lambda: {"state": "queued"}, 0.2, what="job 7 to run", holds=lambda r: r["state"] == "running")
    assert 0.2 <= time.monotonic() - started < 2
    assert str(failed.value) == "timed out after 0.2s waiting for job 7 to run; last seen: {'state': 'queued'}"


async def test_without_what_the_failure_names_the_check_or_quotes_the_lambda() -> None:
    def worker_connected() -> bool:
        return False

    with pytest.raises(AssertionError, match="waiting for worker connected; last seen: False"):
        await eventually(worker_connected, 0.1)
    with pytest.raises(AssertionError, match=r"waiting for .*lambda: 1 \+ 1 == 3.*; last seen: False"):
        await eventually(lambda: 1 + 1 == 3, 0.1)


async def test_a_check_that_hangs_is_cut_off_by_the_same_deadline() -> None:
    async def hangs() -> bool:
        await anyio.sleep_forever()
        return True

    with anyio.fail_after(5), pytest.raises(AssertionError, match="the check never returned"):
        await eventually(hangs, 0.2)


async def test_settle_runs_before_every_look() -> None:
    order: list[str] = []

    async def settle() -> None:
        order.append("settle")

    def look() -> bool:
        order.append("look")
        return len(order) >= 4

    await eventually(look, settle=settle)
    assert order == ["settle", "look", "settle", "look"]


def test_wait_until_blocks_until_the_value_holds_and_fails_alike_at_its_deadline() -> None:
    until = time.monotonic() + 0.2
    assert wait_until(lambda: time.monotonic() >= until and "ready", 5, "the clock", every_s=0.01) == "ready"
    with pytest.raises(AssertionError, match=r"^timed out after 0.1s waiting for nothing; last seen: None$"):
        wait_until(lambda: None, 0.1, "nothing", every_s=0.01)

"""The store's own thread (store/call_thread.py): calls run in the order given, one at a time, on a thread
that is not the event loop's; a call's exception is raised in the task that awaited it; a thread that has
idled ends, and the next call starts another."""

from __future__ import annotations

import threading

import anyio
import pytest

from gridd.broker.store import call_thread
from gridd.broker.store.call_thread import CallThread
from tests.polling import eventually


class Refused(Exception):
    pass


def threads_named(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


async def test_calls_run_in_order_off_the_loop_and_raise_where_awaited() -> None:
    runs = CallThread("test-calls")
    seen: list[tuple[int, int]] = []

    def record(i: int) -> int:
        seen.append((i, threading.get_ident()))
        return i * 10

    async def call(i: int) -> None:
        assert await runs.run(lambda: record(i)) == i * 10

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(call, i)
            await anyio.lowlevel.checkpoint()  # each queued after the one before
    assert [i for i, _ in seen] == list(range(20))
    assert len({ident for _, ident in seen}) == 1 and seen[0][1] != threading.get_ident()

    def refuse() -> None:
        raise Refused("no")

    with pytest.raises(Refused, match="no"):
        await runs.run(refuse)
    assert await runs.run(lambda: "after") == "after"  # the thread goes on


async def test_a_thread_that_idled_ends_and_the_next_call_starts_another(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(call_thread, "IDLE_S", 0.05)
    runs = CallThread("test-idle")
    first = await runs.run(threading.get_ident)
    await eventually(lambda: not threads_named("test-idle"), what="the idle thread to end")
    second = await runs.run(threading.get_ident)
    assert second != threading.get_ident() and len(threads_named("test-idle")) == 1
    assert first != threading.get_ident()

"""Brokers and workers run on uvloop when it is installed, unless GRIDD_UVLOOP=0 says not to."""

from __future__ import annotations

import importlib.util

import anyio
import pytest

from gridd import eventloop


def test_uvloop_is_used_when_installed_and_not_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = importlib.util.find_spec("uvloop") is not None
    monkeypatch.delenv("GRIDD_UVLOOP", raising=False)
    assert eventloop.backend_options() == ({"use_uvloop": True} if installed else {})
    monkeypatch.setenv("GRIDD_UVLOOP", "0")
    assert eventloop.backend_options() == {}


def test_the_options_run_a_loop() -> None:
    async def answer() -> int:
        await anyio.sleep(0)
        return 42

    assert anyio.run(answer, backend_options=eventloop.backend_options()) == 42

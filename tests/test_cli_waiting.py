"""A person's wait rides through a broker restart (tests/e2e/test_wait_through_restart.py), but not for ever:
once the broker has stayed away for RECONNECT_FOR_S, the wait ends with the loss, after one stderr line."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from anyio.abc import TaskStatus

from gridd.cli import waiting
from gridd.client import Client, connect
from gridd.protocol.errors import ConnectionLost
from tests.conftest import TOKEN, running_broker

pytestmark = pytest.mark.anyio


async def test_a_wait_whose_broker_stays_away_gives_up_with_the_loss_after_its_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(waiting, "RECONNECT_FOR_S", 1.0)
    attempts: list[float] = []
    ended: list[tuple[ConnectionLost, float]] = []

    @contextlib.asynccontextmanager
    async def reconnect(address: str) -> AsyncIterator[Client]:
        attempts.append(anyio.current_time())
        async with connect(address, TOKEN) as client:
            yield client

    async def wait_for_a_job_no_worker_runs(address: str, *, task_status: TaskStatus[None]) -> None:
        async with connect(address, TOKEN) as client:
            job = await client.submit(["true"])
            task_status.started()
            try:
                await waiting.through_restarts(client, lambda: reconnect(address), lambda c: c.wait([job]))
            except ConnectionLost as exc:
                ended.append((exc, anyio.current_time()))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            async with running_broker(tmp_path) as broker:
                await tg.start(wait_for_a_job_no_worker_runs, broker.addr)
            lost_at = anyio.current_time()  # the broker has stopped; nothing listens on its port again

    ((error, gave_up_at),) = ended
    assert "cannot connect to the broker" in str(error)  # the last attempt's reason, as one line
    assert len(attempts) >= 3  # tried again and again, 0.2 s, 0.4 s, 0.8 s ... apart
    assert 1.0 <= gave_up_at - lost_at < 1.0 + 5.0 * 1.2  # once RECONNECT_FOR_S had passed, not much later
    assert capsys.readouterr().err.count("waiting for the broker to come back") == 1

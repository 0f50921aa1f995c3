"""Shared test helpers: a real broker on 127.0.0.1 (port 0) with SQLite in tmp_path, real workers,
and deadline polling. Nothing here mocks the database or the socket."""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from gridd.broker.app import run_broker
from gridd.broker.core import Broker
from gridd.client import Client, connect
from gridd.clock import Clock
from gridd.config import BrokerConfig, WorkerConfig
from gridd.worker.agent import WorkerAgent
from gridd.worker.app import make_agent

TOKEN = "test-token"
# `gridd worker` started as root runs jobs as nobody (gridd.worker.job_users), who cannot enter a test's
# tmp dir (pytest makes it 0700, root's). Subprocess workers of tests that are not about who jobs run
# as take these flags: as root, their jobs run as root, named; as anyone else, as that user.
JOBS_AS_WORKER: list[str] = ["--run-as", "root"] if os.geteuid() == 0 else []


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiosqlite and Textual run on asyncio only


@dataclass
class BrokerHandle:
    broker: Broker
    data_dir: Path

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.broker.port}"


@asynccontextmanager
async def running_broker(tmp_path: Path, clock: Clock | None = None, **overrides: Any) -> AsyncIterator[BrokerHandle]:
    """A real broker on 127.0.0.1, port 0, SQLite in tmp_path (time from `clock`); stopped on exit."""
    settings: dict[str, Any] = {"listen": "127.0.0.1:0", "token": TOKEN, "retry_delay_s": 0.05}
    settings.update(overrides)
    data_dir = tmp_path / "broker"
    async with anyio.create_task_group() as tg:
        broker = await tg.start(functools.partial(run_broker, clock=clock), BrokerConfig(**settings), data_dir)
        yield BrokerHandle(broker, data_dir)
        tg.cancel_scope.cancel()


@asynccontextmanager
async def running_worker(tmp_path: Path, addr: str, **overrides: Any) -> AsyncIterator[WorkerAgent]:
    """A real worker agent in this process (jobs are real child processes); stopped on exit."""
    settings: dict[str, Any] = {"broker": addr, "name": "w1", "slots": 2, "token": TOKEN}
    settings.update(overrides)
    agent = make_agent(WorkerConfig(**settings), TOKEN, tmp_path / "workers")
    async with anyio.create_task_group() as tg:
        await tg.start(agent.run)
        yield agent
        tg.cancel_scope.cancel()


@asynccontextmanager
async def client_of(handle: BrokerHandle) -> AsyncIterator[Client]:
    async with connect(handle.addr, TOKEN) as client:
        yield client


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 10.0, every_s: float = 0.02) -> None:
    """Poll `check` until it is true, failing the test after `within_s`."""
    with anyio.fail_after(within_s):
        while not await check():
            await anyio.sleep(every_s)

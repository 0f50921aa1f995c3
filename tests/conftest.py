"""Shared test helpers: a real broker on 127.0.0.1 (port 0) with SQLite in tmp_path, real workers,
and deadline polling (tests/polling.py). Nothing here mocks the database or the socket.

Every broker speaks TLS, as in production. The test brokers share one CA, made once per test process and
copied into each data dir before the broker starts (as brokers of one grid may share theirs), so that
TOKEN, a full credential string naming it, works for every broker, worker and client of the run.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream
from anyio.streams.tls import TLSStream
from cryptography.hazmat.primitives.serialization import Encoding

from gridd.broker.app import run_broker
from gridd.broker.certificates import key_pem, make_ca
from gridd.broker.core import Broker
from gridd.client import Client, connect
from gridd.clock import Clock
from gridd.config import BrokerConfig, WorkerConfig
from gridd.protocol.credentials import ca_digest, format_credential
from gridd.protocol.frames import FrameDecoder
from gridd.protocol.messages import BrokerCA, BrokerMessage
from gridd.worker.agent import WorkerAgent
from gridd.worker.app import make_agent
from tests.pg_fixtures import pg_database, pg_server  # noqa: F401 - the PostgreSQL fixtures, for every test
from tests.polling import eventually as eventually  # the one polling helper; also importable from here

# The store the brokers of the running test keep their jobs in: None, SQLite in their data dir; else a
# postgresql:// URL. The store and broker tests run on both (the `store_backend` fixture sets it).
STORE: dict[str, str | None] = {"url": None}
BACKENDS = ("sqlite", "postgresql")

SECRET = "QXZS0A5fnWGWkC1p5u8nCyXItrwjiFy8"  # the cluster secret of the test brokers (192 bits)
_ca, _ca_key = make_ca()
CA_PEM = _ca.public_bytes(Encoding.PEM)
CA_KEY_PEM = key_pem(_ca_key)
CA_DIGEST = ca_digest(_ca.public_bytes(Encoding.DER))
TOKEN = format_credential(CA_DIGEST, SECRET)  # the credential every test peer holds


def seed_ca(data_dir: Path, cert_pem: bytes = CA_PEM, key_pem: bytes = CA_KEY_PEM) -> None:
    """Give a broker's data dir the test CA before its first start (kept if it has one already)."""
    tls = data_dir / "tls"
    if (tls / "ca.pem").exists():
        return
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tls.mkdir(mode=0o700, exist_ok=True)
    (tls / "ca.pem").write_bytes(cert_pem)
    fd = os.open(tls / "ca.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)


async def tls_connect(port: int, *, local_host: str | None = None) -> ByteStream:
    """A raw TLS connection to a test broker (verified against the test CA), past its BrokerCA frame."""
    return await tls_wrap(await anyio.connect_tcp("127.0.0.1", port, local_host=local_host))


async def tls_wrap(tcp: ByteStream) -> ByteStream:
    """TLS over a connection to a test broker, as gridd's client speaks it, past the BrokerCA frame."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=CA_PEM.decode())
    stream = await TLSStream.wrap(tcp, hostname="127.0.0.1", ssl_context=context, standard_compatible=False)
    first = FrameDecoder[Any](BrokerMessage).feed(await stream.receive())
    assert len(first) == 1 and isinstance(first[0], BrokerCA), first  # the broker speaks first, only that
    return stream


@pytest.fixture(scope="session", autouse=True)
def private_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Clients keep CAs and logins under XDG_CONFIG_HOME and look for a local broker under XDG_DATA_HOME:
    both point into the test run's tmp dir, never at the real home's."""
    root = tmp_path_factory.mktemp("home")
    saved = {k: os.environ.get(k) for k in ("XDG_CONFIG_HOME", "XDG_DATA_HOME")}
    os.environ["XDG_CONFIG_HOME"] = str(root / "config")
    os.environ["XDG_DATA_HOME"] = str(root / "data")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# `gridd worker` started as root runs jobs as nobody (gridd.worker.job_users), who cannot enter a test's
# tmp dir (pytest makes it 0700, root's). Subprocess workers of tests that are not about who jobs run
# as take these flags: as root, their jobs run as root, named; as anyone else, as that user.
JOBS_AS_WORKER: list[str] = ["--run-as", "root"] if os.geteuid() == 0 else []


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiosqlite and Textual run on asyncio only


START_S = 30.0  # bound on a test broker's or worker's start (migrations, TLS files, binding)


@dataclass
class BrokerHandle:
    broker: Broker
    data_dir: Path

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.broker.port}"


@asynccontextmanager
async def running_broker(
    tmp_path: Path, clock: Clock | None = None, *, own_ca: bool = False, **overrides: Any
) -> AsyncIterator[BrokerHandle]:
    """A real broker on 127.0.0.1, port 0, SQLite in tmp_path/broker (time from `clock`); stopped on exit.

    The one way tests start an in-process broker: `overrides` are BrokerConfig fields (e.g. `insecure=True`
    for plain TCP, `listen=` to come back on a port, `lease_ttl_s=`); the same tmp_path is the same data dir,
    so a second `running_broker(tmp_path)` is a restart. It has the test CA (TOKEN names it), unless
    `own_ca`: then it makes its own, as on a first start."""
    settings: dict[str, Any] = {"listen": "127.0.0.1:0", "token": TOKEN, "retry_delay_s": 0.05}
    if STORE["url"] is not None:
        settings["store"] = STORE["url"]
    settings.update(overrides)
    data_dir = tmp_path / "broker"
    if not own_ca:
        seed_ca(data_dir)
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(START_S):
            broker = await tg.start(functools.partial(run_broker, clock=clock), BrokerConfig(**settings), data_dir)
        yield BrokerHandle(broker, data_dir)
        tg.cancel_scope.cancel()


def store_location(tmp_path: Path) -> Path | str:
    """Where a test's store is opened directly (open_store): the backend under test's."""
    return STORE["url"] or tmp_path / "gridd.db"


@pytest.fixture
def store_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The store backend of this test: "sqlite", or "postgresql" on a fresh database of the session's server.
    A conftest parametrizes it (pytest_generate_tests) where tests run on both."""
    backend: str = getattr(request, "param", "sqlite")
    if backend == "postgresql":
        STORE["url"] = request.getfixturevalue("pg_database").url
    try:
        yield backend
    finally:
        STORE["url"] = None


def parametrize_backends(
    metafunc: pytest.Metafunc, sqlite_only: frozenset[str] = frozenset(), postgresql_only: frozenset[str] = frozenset()
) -> None:
    """Run the tests of a folder on both backends, except the modules named in `sqlite_only` (once, on SQLite)
    and `postgresql_only` (about several brokers on one store)."""
    if "store_backend" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if module in postgresql_only:
        metafunc.parametrize("store_backend", ["postgresql"], indirect=True)
    elif module not in sqlite_only:
        metafunc.parametrize("store_backend", BACKENDS, indirect=True)


@asynccontextmanager
async def running_worker(tmp_path: Path, addr: str, **overrides: Any) -> AsyncIterator[WorkerAgent]:
    """A real worker agent in this process (jobs are real child processes); stopped on exit."""
    settings: dict[str, Any] = {"broker": addr, "name": "w1", "slots": 2, "token": TOKEN}
    settings.update(overrides)
    agent = make_agent(WorkerConfig(**settings), TOKEN, tmp_path / "workers")
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(START_S):
            await tg.start(agent.run)
        yield agent
        tg.cancel_scope.cancel()


@asynccontextmanager
async def client_of(handle: BrokerHandle) -> AsyncIterator[Client]:
    async with connect(handle.addr, TOKEN) as client:
        yield client

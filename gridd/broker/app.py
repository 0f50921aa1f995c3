"""The broker's composition root: opens the store and starts every component in one task group."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import anyio
import structlog
from anyio.abc import TaskStatus

from gridd.broker.admission import Admission, ConnectionLimits, raise_open_files_limit
from gridd.broker.auth import broker_token, is_loopback
from gridd.broker.core import Broker
from gridd.broker.credentials import Credentials
from gridd.broker.datadir import secure_data_dir
from gridd.broker.events import EventHub
from gridd.broker.leases import LeaseReaper
from gridd.broker.listener import serve_peers
from gridd.broker.maintenance import Maintenance
from gridd.broker.metrics import BrokerMetrics, serve_metrics
from gridd.broker.settings import BrokerSettings
from gridd.broker.store import open_store
from gridd.broker.store.opening import is_database_url
from gridd.broker.tls import broker_names, load_or_make
from gridd.clock import Clock, SystemClock
from gridd.config import BrokerConfig, parse_address
from gridd.protocol.errors import ConfigError, DataDirInUse

log = structlog.get_logger()

ADDR_FILE = "broker.addr"
LOCK_FILE = "broker.lock"


async def run_broker(
    config: BrokerConfig,
    data_dir: Path,
    *,
    clock: Clock | None = None,
    task_status: TaskStatus[Broker] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled. Reports the Broker once it listens; its bound address is in DIR/broker.addr."""
    # Before anything in the data dir is read or written: a second broker on it must not even make a token.
    with _locked(data_dir):
        await _serve(config, data_dir, clock or SystemClock(), task_status)


async def _serve(config: BrokerConfig, data_dir: Path, clock: Clock, task_status: TaskStatus[Broker]) -> None:
    host, port = parse_address(config.listen)
    db = secure_data_dir(data_dir)
    ttl_ms = int(config.lease_ttl_s * 1000)
    if config.metrics is not None:  # a malformed address is a usage error before anything starts
        try:
            parse_address(config.metrics)
        except ConfigError as exc:
            raise ConfigError(f"the metrics address (--metrics): {exc}") from None
    metrics = BrokerMetrics() if config.metrics is not None else None
    if config.store is not None and not is_database_url(config.store):
        raise ConfigError(f"--store takes a postgresql://USER@HOST/DB URL, not {config.store!r}")
    async with open_store(config.store or db, metrics) as store, anyio.create_task_group() as tg:
        # The CA is made under --insecure too: credentials always pin it, and stay valid when TLS is on.
        tls = load_or_make(data_dir, broker_names(host, config.advertise), keep_for_user=config.keep_ca_for_user)
        secret = broker_token(config.token, data_dir, tls.ca_digest, loopback=is_loopback(host))
        # Workers that ran jobs under the previous broker get one TTL to re-attach before any is reaped.
        extended = await store.extend_running_leases(clock.now_ms() + ttl_ms)
        settings = BrokerSettings(
            ttl_ms,
            int(config.retry_delay_s * 1000),
            max_bundle_bytes=config.max_bundle_bytes,
            max_command_bytes=config.max_command_bytes,
            max_stdin_bytes=config.max_stdin_bytes,
            max_output_bytes=config.max_output_bytes,
            keep_ms=int(config.keep_s * 1000) if config.keep_s else None,
        )
        hub = EventHub(config.max_pending_events)
        broker = Broker(
            store, hub, clock, settings, await store.count_by_queue(), ca_digest=tls.ca_digest, observer=metrics
        )
        broker.lanes.add(await store.known_lanes())
        await tg.start(broker.dispatcher.run)
        await tg.start(broker.promoter.run)  # its first pass queues the jobs whose time came while we were down
        await tg.start(LeaseReaper(broker, clock, config.reap_every_s).run)
        await tg.start(broker.schedules.run)  # fires the slots missed while no broker ran, then each as it comes
        tg.start_soon(store.follow_peers, broker.from_peer, broker.recount)  # other brokers on this store, if any
        raise_open_files_limit()
        tg.start_soon(Maintenance(broker, config.maintain_every_s).run)
        credentials = Credentials(secret, store, clock)  # the cluster token, and the role tokens in the store
        admission = Admission(ConnectionLimits.of(config))
        if metrics is not None and config.metrics is not None:
            metrics.watch(broker, admission)
            broker.metrics_port = await tg.start(serve_metrics, config.metrics, metrics.registry)
        bound = await tg.start(
            partial(serve_peers, tls=None if config.insecure else tls, admission=admission),
            host,
            port,
            broker,
            credentials,
        )
        broker.port = bound
        _write_addr(data_dir, host, bound)
        log.info(
            "broker.started",
            data_dir=str(data_dir),
            port=bound,
            running_leases=extended,
            transport="tcp (--insecure: credentials and data in the clear)" if config.insecure else "tls1.3",
            ca_sha256=tls.ca_digest,
        )
        task_status.started(broker)


def _write_addr(data_dir: Path, host: str, port: int) -> None:
    """Atomically (write, then rename) so a reader never sees half an address."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    tmp = data_dir / f".{ADDR_FILE}.{os.getpid()}"
    tmp.write_text(f"{shown}:{port}\n")
    tmp.replace(data_dir / ADDR_FILE)


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on DIR/broker.lock while the broker runs; DataDirInUse names the holder.

    Two brokers on one data dir would share the database but each take broker.addr and hand out the
    same ids; the lock (released by the kernel when its holder exits, even on kill -9) makes the second
    one stop before it touches anything.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise DataDirInUse(f"another broker (pid {holder}) is running on the data dir {data_dir}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race a broker starting now)

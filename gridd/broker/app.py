"""The broker's composition root: opens the store and starts every component in one task group."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import structlog
from anyio.abc import TaskStatus

from gridd.broker.auth import broker_token
from gridd.broker.core import Broker, BrokerSettings
from gridd.broker.events import EventHub
from gridd.broker.leases import LeaseReaper
from gridd.broker.listener import serve_peers
from gridd.broker.maintenance import Maintenance
from gridd.broker.store import open_store
from gridd.clock import Clock, SystemClock
from gridd.config import BrokerConfig, parse_address

log = structlog.get_logger()

ADDR_FILE = "broker.addr"


async def run_broker(
    config: BrokerConfig,
    data_dir: Path,
    *,
    clock: Clock | None = None,
    task_status: TaskStatus[Broker] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled. Reports the Broker once it listens; its bound address is in DIR/broker.addr."""
    clock = clock or SystemClock()
    host, port = parse_address(config.listen)
    token = broker_token(config.token, data_dir)
    ttl_ms = int(config.lease_ttl_s * 1000)
    async with open_store(data_dir / "gridd.db") as store, anyio.create_task_group() as tg:
        # Workers that ran jobs under the previous broker get one TTL to re-attach before any is reaped.
        extended = await store.extend_running_leases(clock.now_ms() + ttl_ms)
        settings = BrokerSettings(
            ttl_ms,
            int(config.retry_delay_s * 1000),
            max_command_bytes=config.max_command_bytes,
            max_stdin_bytes=config.max_stdin_bytes,
            max_output_bytes=config.max_output_bytes,
            keep_ms=int(config.keep_s * 1000) if config.keep_s else None,
        )
        hub = EventHub(config.max_pending_events)
        broker = Broker(store, hub, clock, settings, await store.count_by_queue())
        broker.lanes.add(await store.known_lanes())
        await tg.start(broker.dispatcher.run)
        await tg.start(LeaseReaper(broker, clock, config.reap_every_s).run)
        tg.start_soon(Maintenance(broker, config.maintain_every_s).run)
        bound = await tg.start(serve_peers, host, port, broker, token)
        broker.port = bound
        _write_addr(data_dir, host, bound)
        log.info("broker.started", data_dir=str(data_dir), port=bound, running_leases=extended)
        task_status.started(broker)


def _write_addr(data_dir: Path, host: str, port: int) -> None:
    """Atomically (write, then rename) so a reader never sees half an address."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    tmp = data_dir / f".{ADDR_FILE}.{os.getpid()}"
    tmp.write_text(f"{shown}:{port}\n")
    tmp.replace(data_dir / ADDR_FILE)

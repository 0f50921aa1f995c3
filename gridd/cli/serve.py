"""The long-running commands: broker, worker, demo. The only code that handles signals."""

from __future__ import annotations

import argparse
import itertools
import os
import signal
from pathlib import Path

import anyio
import structlog

from gridd.client.locate import cluster_token
from gridd.config import Config, broker_data_dir, default_data_dir
from gridd.eventloop import backend_options
from gridd.logs import configure_logging
from gridd.protocol.errors import NoToken

log = structlog.get_logger()

TOKEN_WAIT_S = 10.0


def run(args: argparse.Namespace, config: Config) -> int:
    # The broker, the worker and the demo (both) are imported when run, for start-up speed: a worker
    # does not load the broker (its store, SQLite), nor a broker the worker's agent.
    if args.command == "demo":
        from gridd.cli.demo import run_demo

        configure_logging("warning", "logfmt")
        return anyio.run(run_demo, args)
    configure_logging(args.log_level, args.log_format)
    if args.command == "broker":
        return anyio.run(_broker, config, backend_options=backend_options())
    return anyio.run(_worker, config, backend_options=backend_options())


async def _broker(config: Config) -> int:
    from gridd.broker.app import run_broker

    data_dir = Path(broker_data_dir(config.broker, os.environ))
    async with anyio.create_task_group() as tg:
        await tg.start(run_broker, config.broker, data_dir)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("broker.stopping", signal=signal.Signals(signum).name)
                break
        tg.cancel_scope.cancel()
    log.info("broker.stopped")
    return 0


async def _token_when_ready(given: str | None, wait_s: float = TOKEN_WAIT_S) -> str:
    """The cluster token. A local broker started a moment before (`gridd broker & gridd worker &`) may not
    have written its token file yet: give it a few seconds before saying there is none."""
    with anyio.move_on_after(wait_s):
        for attempt in itertools.count():
            try:
                return cluster_token(given)
            except NoToken as exc:
                if attempt == 0:
                    log.info("worker.waiting_for_token", error=str(exc), wait_s=wait_s)
                await anyio.sleep(0.1)
    return cluster_token(given)


async def _worker(config: Config) -> int:
    from gridd.worker.app import make_agent
    from gridd.worker.job_users import announce, job_users, with_default

    worker = with_default(config.worker, os.geteuid())  # root: jobs run as nobody unless told
    job_users(worker, os.geteuid())  # a usage error is said before anything else is looked for
    token = await _token_when_ready(worker.token)
    agent = make_agent(worker, token, Path(default_data_dir(os.environ)))
    announce(agent.job_users, tasks=bool(worker.tasks))
    async with anyio.create_task_group() as tg:

        async def agent_then_stop() -> None:
            await agent.run()
            tg.cancel_scope.cancel()

        tg.start_soon(agent_then_stop)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if agent.draining:
                    log.warning("worker.stopping_now", signal=signal.Signals(signum).name)
                    tg.cancel_scope.cancel()
                    break
                agent.drain()
    log.info("worker.stopped")
    return 0

"""`gridd autoscale`: workers on demand. A client of the broker, like the dashboards: it looks at the grid
every --every seconds (the queued jobs, the connected workers), asks autoscale_policy.decide what to do, and
runs the --up or --down shell command. The broker knows nothing of it.

Each decision is a structlog event (`autoscale.up`, `autoscale.down`) on stderr and one line on stdout for a
person. The commands run in the background, in a session of their own (the workers they start outlive a
Ctrl-C of the autoscaler), their output going where the autoscaler's goes. While the broker is away it
tries again with the one Backoff; a credential the broker refuses ends it (exit 3).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import anyio
import anyio.abc
import structlog

from gridd.cli.args_autoscale import check_bounds
from gridd.cli.autoscale_policy import Decision, Memory, QueuedJob, Settings, Snapshot, Worker, decide
from gridd.client.api import Client, connect
from gridd.client.backoff import Backoff
from gridd.client.locate import broker_address, cluster_token
from gridd.config import Config
from gridd.logs import configure_logging
from gridd.protocol.errors import ConfigError, ConnectionLost
from gridd.protocol.messages import JobView, WorkerView
from gridd.protocol.states import JobState

log = structlog.get_logger()

QUEUED_LOOKED_AT = 1000  # the newest queued jobs one look reads (a larger backlog asks for --max anyway)
BACKOFF_MAX_S = 30.0


def run(args: argparse.Namespace, config: Config) -> int:
    problem = check_bounds(args)
    if problem is not None:
        raise ConfigError(problem)
    configure_logging(args.log_level, args.log_format)
    settings = Settings(
        min_workers=args.min_workers,
        max_workers=args.max_workers,
        after_s=args.after,
        idle_s=args.idle,
        queue=args.queue,
        warmup_s=args.warmup,
    )
    scaler = Autoscaler(settings, args.up, args.down)
    token = cluster_token(config.client.token)
    insecure = config.client.insecure

    async def main() -> None:  # until interrupted
        backoff = Backoff(args.every, max(args.every, BACKOFF_MAX_S))
        async with anyio.create_task_group() as commands:
            while True:
                address = broker_address(config)  # asked again each time: a local broker may move port
                try:
                    async with connect(address, token, insecure=insecure) as client:
                        log.info("autoscale.connected", broker=address)
                        while True:
                            await scaler.look(client, commands)
                            backoff.reset()
                            await anyio.sleep(args.every)
                except (ConnectionLost, OSError) as exc:
                    log.warning("autoscale.broker_away", broker=address, error=str(exc))
                    print(f"gridd autoscale: {exc}; trying again", file=sys.stderr, flush=True)
                    await backoff.wait()

    anyio.run(main)
    return 0


class Autoscaler:
    """The memory between looks, and the actions of each decision."""

    def __init__(self, settings: Settings, up: str, down: str) -> None:
        self.settings = settings
        self.up = up
        self.down = down
        self.memory = Memory()

    async def look(self, client: Client, commands: anyio.abc.TaskGroup) -> Decision:
        workers = await client.workers()
        queued = await client.jobs(state=JobState.QUEUED, queue=self.settings.queue, limit=QUEUED_LOOKED_AT)
        snapshot = snapshot_of(workers, queued, int(time.time() * 1000))
        decision = decide(snapshot, self.settings, self.memory)
        self.memory = decision.memory
        if decision.start:
            log.info("autoscale.up", count=decision.start, reason=decision.reason)
            many = "1 worker" if decision.start == 1 else f"{decision.start} workers"
            print(f"autoscale: starting {many}: {decision.reason}", flush=True)
            env = {"GRIDD_AUTOSCALE_COUNT": str(decision.start)}
            commands.start_soon(_run_command, "up", f"{self.up} {decision.start}", env)
        if decision.stop:
            names = " ".join(decision.stop)
            log.info("autoscale.down", workers=names, reason=decision.reason)
            print(f"autoscale: stopping {names}: {decision.reason}", flush=True)
            env = {"GRIDD_AUTOSCALE_WORKERS": names}
            commands.start_soon(_run_command, "down", f"{self.down} {shlex.join(decision.stop)}", env)
        return decision


def snapshot_of(workers: list[WorkerView], queued: list[JobView], now_ms: int) -> Snapshot:
    """The broker's answers as the plain values the policy reads."""
    return Snapshot(
        now_ms=now_ms,
        workers=tuple(
            Worker(w.name, w.slots, w.running, tuple(w.queues), w.state, w.connected_ms) for w in workers if w.connected
        ),
        queued=tuple(
            QueuedJob(j.queue, max(j.submitted_ms, j.start_at_ms or 0)) for j in queued if j.state == JobState.QUEUED
        ),
    )


async def _run_command(what: str, command: str, env: dict[str, str]) -> None:
    """Run one --up/--down command through the shell; a failure is logged and printed, not fatal."""
    try:
        done = await anyio.run_process(
            command, stdout=None, stderr=None, check=False, env={**os.environ, **env}, start_new_session=True
        )
    except OSError as exc:
        log.warning("autoscale.command_failed", command=what, error=str(exc))
        print(f"autoscale: the --{what} command could not run: {exc}", file=sys.stderr, flush=True)
        return
    if done.returncode != 0:
        log.warning("autoscale.command_failed", command=what, status=done.returncode)
        print(f"autoscale: the --{what} command exited with {done.returncode}", file=sys.stderr, flush=True)
    else:
        log.info("autoscale.command_done", command=what)

"""The client commands: each connects, makes its requests, and prints for a person or a script."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio

from gridd.cli import bundles, quick, render, schedules, specs, tokens
from gridd.cli.expand import ids_from_stdin
from gridd.cli.live import LiveOutput
from gridd.cli.waiting import through_restarts
from gridd.client.api import Client, connect
from gridd.client.locate import broker_address, cluster_token
from gridd.config import Config, parse_duration
from gridd.printable import printable, printable_lines
from gridd.protocol.errors import ConfigError, ConnectionLost, GriddError, exception_for
from gridd.protocol.messages import AttemptView, JobView
from gridd.protocol.states import JOB_STATES, JobState

EXIT_UNFINISHED = 125  # submit --wait: gridd could not bring the job to an end


def run(args: argparse.Namespace, config: Config) -> int:
    handler = _COMMANDS[args.command]
    address = broker_address(config)
    token = config.client.token
    insecure = config.client.insecure
    if args.command == "submit" and args.wait and not (args.each or args.array):
        return _submit_and_wait(args, address, token, insecure)

    async def main() -> int:
        credential = cluster_token(token)
        # For steps that ride through a broker restart: a new connection, as this one was made.
        args.reconnect = lambda: connect(address, credential, insecure=insecure)
        async with args.reconnect() as client:
            return await handler(client, args)

    return anyio.run(main)


# ---- submit --------------------------------------------------------------------------------------------------


async def _submit(client: Client, args: argparse.Namespace) -> int:
    many = specs.submitted(args)
    key, ttl_s = specs.key_of(args)
    if not (args.each or args.array):
        (job_id,) = await client.submit_many(many, after=args.after, key=key, key_ttl_s=ttl_s)
        print(job_id, flush=True)
        return 0
    if not many:
        specs.nothing_to_submit(args)
        return 0
    ids, group = await client.submit_group(
        many, after=args.after, max_running=args.max_running, key=key, key_ttl_s=ttl_s
    )
    sys.stdout.write("".join(f"{job_id}\n" for job_id in ids))
    sys.stdout.flush()
    if not args.wait:
        return 0
    views = await through_restarts(client, args.reconnect, lambda c: c.wait([group]))
    bad = Counter(j.state for j in views if j.state != JobState.SUCCEEDED)
    if bad:
        detail = ", ".join(f"{n} {state}" for state, n in sorted(bad.items()))
        print(
            f"gridd: {sum(bad.values())} of {len(views)} jobs of group {group} did not succeed ({detail})",
            file=sys.stderr,
        )
        return 1
    return 0


def _submit_and_wait(args: argparse.Namespace, address: str, token: str | None, insecure: bool) -> int:
    """Behave like running the command here: its stdout, its stderr, its exit status. Under --key a retry
    that finds the first's job waits for that one, and behaves as the first would have."""
    spec = specs.spec_of(args)
    key, ttl_s = specs.key_of(args)

    async def main() -> int:
        credential = cluster_token(token)

        def reconnect() -> AbstractAsyncContextManager[Client]:
            return connect(address, credential, insecure=insecure)

        async with reconnect() as client:
            (job_id,) = await client.submit_many([spec], after=args.after, key=key, key_ttl_s=ttl_s)
            print(job_id, file=sys.stderr, flush=True)
            live = LiveOutput(job_id)

            async def outcome(c: Client) -> tuple[JobView, list[AttemptView], bytes, bool, bytes, bool]:
                """Wait (writing its output as it comes), then read the result: idempotent."""

                async def relay() -> None:
                    with contextlib.suppress(GriddError):  # best effort: finish() completes the output
                        async for chunk in c.follow_output(job_id):
                            live.chunk(chunk)

                try:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(relay)
                        (job,) = await c.wait([job_id])
                        tg.cancel_scope.cancel()
                except BaseExceptionGroup as group:  # the relay swallows its own: this is the wait's
                    raise group.exceptions[0] from None
                _, attempts = await c.show(job_id)
                return job, attempts, *await c.output(job_id, "stdout"), *await c.output(job_id, "stderr")

            job, attempts, out, out_cut, err, err_cut = await through_restarts(client, reconnect, outcome)
        live.finish(attempts, {"stdout": out, "stderr": err})
        for name, cut in (("stdout", out_cut), ("stderr", err_cut)):
            if cut:
                print(f"gridd: job {job_id}'s {name} was truncated", file=sys.stderr)
        if job.state == JobState.SUCCEEDED:
            return 0
        if job.state == JobState.FAILED and job.exit_code is not None:
            return job.exit_code
        reason = f": {printable(job.reason)}" if job.reason else ""
        print(f"gridd: job {job_id} {job.state}{reason}", file=sys.stderr)
        return EXIT_UNFINISHED

    try:
        return anyio.run(main)
    except (ConnectionLost, ConfigError) as exc:
        print(f"gridd: {exc}", file=sys.stderr)
        return EXIT_UNFINISHED


# ---- inspection ---------------------------------------------------------------------------------------------


async def _show(client: Client, args: argparse.Namespace) -> int:
    quick.print_shown(*await client.show(args.job), args)
    return 0


async def _why(client: Client, args: argparse.Namespace) -> int:
    explained = await client.why(args.job)
    print(render.to_json(render.why_record(explained)) if args.json else render.why(explained))
    return 0


async def _jobs(client: Client, args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise ConfigError("--limit must be 0 (all) or more")
    if args.state is not None and args.state not in JOB_STATES:
        raise ConfigError(f"unknown state {args.state!r}; states are: {', '.join(JOB_STATES)}")
    views = await client.jobs(state=args.state, queue=args.queue, limit=args.limit, group=args.group)
    print(render.to_json([render.job_record(j) for j in views]) if args.json else render.jobs(views))
    return 0


async def _workers(client: Client, args: argparse.Namespace) -> int:
    views = await client.workers()
    print(render.to_json(views) if args.json else render.workers(views))
    return 0


async def _status(client: Client, args: argparse.Namespace) -> int:
    quick.print_status(await client.status(), args)
    return 0


async def _report(client: Client, args: argparse.Namespace) -> int:
    since_ms = 0
    if args.since is not None:
        seconds = parse_duration(args.since, "--since")
        if seconds is None:
            raise ConfigError("--since wants a duration such as 7d or 12h (leave it out for all time)")
        since_ms = max(0, int(time.time() * 1000 - seconds * 1000))
    rows = await client.report(since_ms, args.by)
    print(render.to_json(rows) if args.json else render.report(rows, args.by))
    return 0


async def _purge(client: Client, args: argparse.Namespace) -> int:
    older_than = None
    if args.older_than is not None:
        older_than = parse_duration(args.older_than, "--older-than")
        if older_than is None:
            raise ConfigError("--older-than wants a duration such as 30d or 12h (never purges nothing)")
    purged = await client.purge(older_than)
    print(render.to_json({"purged": purged}) if args.json else f"removed {purged} finished job{'s' * (purged != 1)}")
    return 0


async def _logs(client: Client, args: argparse.Namespace) -> int:
    stream = "stderr" if args.stderr else "stdout"
    data, truncated = await client.output(args.job, stream)
    if sys.stdout.isatty() and not args.raw:  # a job's escape sequences must not drive this terminal
        data = printable_lines(data.decode(errors="replace")).encode()
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    if truncated:
        print(f"gridd: job {args.job}'s {stream} was truncated", file=sys.stderr)
    return 0


async def _wait(client: Client, args: argparse.Namespace) -> int:
    refs = list(ids_from_stdin(args.jobs))
    if not refs:
        return 0
    views = await through_restarts(client, args.reconnect, lambda c: c.wait(refs))
    bad = [j for j in views if j.state != JobState.SUCCEEDED]
    for j in bad:
        exit_part = f", exit code {j.exit_code}" if j.exit_code is not None else ""
        print(f"gridd: job {j.id} {j.state}{exit_part}", file=sys.stderr)
    return 1 if bad else 0


def _control(action: str) -> Callable[[Client, argparse.Namespace], Awaitable[int]]:
    async def handler(client: Client, args: argparse.Namespace) -> int:
        refs = list(ids_from_stdin(args.jobs))
        if not refs:
            return 0
        outcomes = await client.control(action, refs)
        failed = False
        for o in outcomes:
            if o.code and o.group is None:
                print(f"gridd: {exception_for(o.code, o.message)}", file=sys.stderr)
                failed = True
        # A group: act on those of its jobs for which it makes sense, say how many, fail only if none.
        groups: dict[str, list[int]] = {}
        for o in outcomes:
            if o.group is not None:
                groups.setdefault(o.group, []).append(o.code)
        for group, codes in groups.items():
            done = codes.count(0)
            print(f"gridd: {_PAST[action]} {done} of {len(codes)} jobs of group {group}", file=sys.stderr)
            failed = failed or done == 0
        return 1 if failed else 0

    return handler


async def _events(client: Client, args: argparse.Namespace) -> int:
    def wanted(e: Any) -> bool:
        return (
            (not args.kind or any(e.kind.startswith(k) for k in args.kind))
            and (not args.job or e.job_id in args.job)
            and (not args.worker or e.worker in args.worker)
            and (not args.queue or e.queue in args.queue)
        )

    async def follow(c: Client) -> int:
        async for event in c.follow_events():
            if wanted(event):
                print(render.to_json(event) if args.json else render.event_line(event), flush=True)
        return 0

    try:  # through a broker's restart, or a move to the next of several (events meanwhile are not shown)
        return await through_restarts(client, args.reconnect, follow)
    except GriddError as exc:
        print(f"gridd: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, ConnectionLost) else 1


_PAST = {"cancel": "cancelled", "retry": "retried", "hold": "held", "release": "released"}  # verbs: not a job state

_COMMANDS: dict[str, Callable[[Client, argparse.Namespace], Awaitable[int]]] = {
    "submit": _submit,
    "show": _show,
    "why": _why,
    "jobs": _jobs,
    "workers": _workers,
    "status": _status,
    "report": _report,
    "purge": _purge,
    "logs": _logs,
    "wait": _wait,
    "cancel": _control("cancel"),
    "retry": _control("retry"),
    "hold": _control("hold"),
    "release": _control("release"),
    "events": _events,
    "bundle": bundles.run,
    "token": tokens.run,
    "schedule": schedules.run,
}

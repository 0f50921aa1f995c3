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
import msgspec

from gridd.cli import bundles, render, schedules, tokens
from gridd.cli.expand import array_items, each_items, expand_argv, ids_from_stdin
from gridd.cli.live import LiveOutput
from gridd.cli.retry_flags import retry_fields
from gridd.cli.start_flags import start_of
from gridd.cli.waiting import through_restarts
from gridd.client.api import Client, connect
from gridd.client.locate import broker_address, cluster_token
from gridd.config import Config, parse_duration
from gridd.printable import printable, printable_lines
from gridd.protocol.bundles import ref_problem
from gridd.protocol.errors import ConfigError, ConnectionLost, GriddError, exception_for
from gridd.protocol.idempotency import key_problem, key_ttl_problem
from gridd.protocol.messages import AttemptView, JobSpec, JobView
from gridd.protocol.records import MAX_GANG
from gridd.protocol.states import JOB_STATES, JobState
from gridd.resources import MAX_JOB_CPUS, parse_requirement, parse_size_mb

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


def _spec(args: argparse.Namespace) -> JobSpec:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise ConfigError("submit needs a command: gridd submit [FLAGS] -- COMMAND [ARG...]")
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env wants KEY=VALUE, got {item!r}")
        env[key] = value
    for flag, value, low, high in (
        ("--priority", args.priority, -(2**63), 2**63 - 1),
        ("--max-attempts", args.max_attempts, 1, 1000),
    ):
        if not low <= value <= high:
            raise ConfigError(f"{flag} must be between {low} and {high}, got {value}")
    if args.timeout is not None and args.timeout <= 0:
        raise ConfigError("--timeout must be more than 0 seconds")
    if args.stdin and args.each == "-":
        raise ConfigError("--stdin and --each - both want standard input")
    if args.gang is not None and not 1 <= args.gang <= MAX_GANG:
        raise ConfigError(f"--gang must be between 1 and {MAX_GANG} (workers), got {args.gang}")
    if not 1 <= args.cpus <= MAX_JOB_CPUS:
        raise ConfigError(f"--cpus must be between 1 and {MAX_JOB_CPUS}, got {args.cpus}")
    memory_mb = parse_size_mb(args.memory) if args.memory is not None else 0
    requires = dict(parse_requirement(r) for r in args.require)
    stdin = sys.stdin.buffer.read() if args.stdin else None
    retry_on, retry_delay_s = retry_fields(args)
    return JobSpec(
        argv=argv,
        queue=args.queue,
        priority=args.priority,
        max_attempts=args.max_attempts,
        timeout_s=args.timeout,
        env=env,
        stdin=stdin,
        bundle=_bundle(args.bundle),
        cpus=args.cpus,
        memory_mb=memory_mb,
        requires=requires,
        retry_on=retry_on,
        retry_delay_s=retry_delay_s,
        start_at_ms=start_of(args.at, args.in_),
        gang=args.gang or 0,
    )


def _bundle(ref: str | None) -> str | None:
    problem = ref_problem(ref) if ref is not None else None
    if problem is not None:
        raise ConfigError(f"--bundle: {problem}")
    return ref


async def _submit(client: Client, args: argparse.Namespace) -> int:
    if args.max_running is not None and not (args.each or args.array):
        raise ConfigError("--max-running applies to --each or --array submissions")
    if args.max_running is not None and args.max_running < 1:
        raise ConfigError("--max-running must be at least 1")
    key, ttl_s = _key(args)
    if not (args.each or args.array):
        (job_id,) = await client.submit_many([_spec(args)], after=args.after, key=key, key_ttl_s=ttl_s)
        print(job_id, flush=True)
        return 0
    specs = _many_specs(args)
    if not specs:
        print(f"gridd: nothing to submit: {args.each} has no non-empty line", file=sys.stderr)
        return 0
    ids, group = await client.submit_group(
        specs, after=args.after, max_running=args.max_running, key=key, key_ttl_s=ttl_s
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


def _key(args: argparse.Namespace) -> tuple[str | None, float | None]:
    """--key and --key-ttl (seconds; None: the default) checked: exit 2 for one out of bounds."""
    if args.key is None:
        if args.key_ttl is not None:
            raise ConfigError("--key-ttl applies to a submit with --key")
        return None, None
    problem = key_problem(args.key)
    if problem is not None:
        raise ConfigError(f"--key: {problem}")
    if args.key_ttl is None:
        return args.key, None
    ttl_s = parse_duration(args.key_ttl, "--key-ttl")
    problem = key_ttl_problem(ttl_s) if ttl_s is not None else "a key cannot be kept for ever"
    if problem is not None:
        raise ConfigError(f"--key-ttl: {problem}")
    return args.key, ttl_s


def _many_specs(args: argparse.Namespace) -> list[JobSpec]:
    template = _spec(args)
    if args.each:
        items = each_items(args.each)
        key = "GRIDD_ITEM"
    else:
        items = [str(i) for i in array_items(args.array)]
        key = "GRIDD_ARRAY_INDEX"
    return [
        msgspec.structs.replace(template, argv=expand_argv(template.argv, item), env={**template.env, key: item})
        for item in items
    ]


def _submit_and_wait(args: argparse.Namespace, address: str, token: str | None, insecure: bool) -> int:
    """Behave like running the command here: its stdout, its stderr, its exit status. Under --key a retry
    that finds the first's job waits for that one, and behaves as the first would have."""
    spec = _spec(args)
    key, ttl_s = _key(args)

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
    job, attempts = await client.show(args.job)
    print(render.to_json(render.shown_record(job, attempts)) if args.json else render.show(job, attempts))
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
    report = await client.status()
    if args.json:
        fields: dict[str, object] = {"counts": report.counts, "workers": report.workers, "slots": report.slots}
        fields["running"] = report.running  # the number of running jobs: not a job state
        print(render.to_json(fields))
    else:
        print(render.status(report))
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

    try:
        async for event in client.follow_events():
            if wanted(event):
                print(render.to_json(event) if args.json else render.event_line(event), flush=True)
    except GriddError as exc:
        print(f"gridd: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, ConnectionLost) else 1
    return 0


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
    "schedule": lambda client, args: schedules.run(client, args, spec_of=_spec),
}

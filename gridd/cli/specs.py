"""What submit's flags make: the job's spec (its command, environment, needs, retries, start time), the
specs of an --each or --array submission, and the idempotency key. Every flag that cannot be read is a
ConfigError naming it (exit 2), before anything is sent.

Shared by the one-shot submit (quick.py), the others (commands.py) and `schedule add` (schedules.py).
"""

from __future__ import annotations

import argparse
import sys

import msgspec

from gridd.cli.expand import array_items, each_items, expand_argv
from gridd.cli.retry_flags import retry_fields
from gridd.cli.start_flags import start_of
from gridd.config import parse_duration
from gridd.protocol.bundles import ref_problem
from gridd.protocol.errors import ConfigError
from gridd.protocol.idempotency import key_problem, key_ttl_problem
from gridd.protocol.records import MAX_GANG, JobSpec
from gridd.resources import MAX_JOB_CPUS, parse_requirement, parse_size_mb


def spec_of(args: argparse.Namespace) -> JobSpec:
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


def key_of(args: argparse.Namespace) -> tuple[str | None, float | None]:
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


def submitted(args: argparse.Namespace) -> list[JobSpec]:
    """The specs a submit makes: one job's, or those of --each or --array (none for an --each of no
    non-empty line: `nothing_to_submit`). --max-running is for the latter, and at least 1."""
    group = bool(args.each or args.array)
    if args.max_running is not None and not group:
        raise ConfigError("--max-running applies to --each or --array submissions")
    if args.max_running is not None and args.max_running < 1:
        raise ConfigError("--max-running must be at least 1")
    return many_specs(args) if group else [spec_of(args)]


def nothing_to_submit(args: argparse.Namespace) -> None:
    """Say that an --each had nothing in it (a submit of no job makes no request; it is not an error)."""
    print(f"gridd: nothing to submit: {args.each} has no non-empty line", file=sys.stderr)


def many_specs(args: argparse.Namespace) -> list[JobSpec]:
    template = spec_of(args)
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

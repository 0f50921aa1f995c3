"""`gridd token create|list|revoke`: credentials per role, made and managed with an admin credential.
Parsing and printing only; the broker decides (gridd/broker/authorization.py)."""

from __future__ import annotations

import argparse
import time

from gridd.cli import render
from gridd.client.api import Client
from gridd.config import check_worker_name, parse_duration
from gridd.protocol.errors import ConfigError
from gridd.protocol.messages import TokenView

ROLES = ("admin", "submit", "worker", "read")


def add_parser(command: argparse.ArgumentParser) -> None:
    """The `token` command's own subcommands."""
    actions = command.add_subparsers(dest="token_action", metavar="ACTION", required=True)
    p = actions.add_parser(
        "create",
        help="make a credential for a role; prints it (once: the broker keeps only its hash)",
        description="Make a credential for a role and print it: give it to its holder as GRIDD_TOKEN. "
        "admin: everything; submit: submit, and see and control its own jobs; worker: run jobs as worker NAME; "
        "read: see jobs, workers and events, never output, env or arguments.",
    )
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument(
        "--name", required=True, type=_name, metavar="NAME", help="who holds it: a job's owner, a worker's name"
    )
    p.add_argument(
        "--queues", type=_queues, metavar="Q,..", help="submit: only to these queues; worker: serve only these"
    )
    p.add_argument("--expires", type=_expires, metavar="DURATION", help="refused after this long: 30d, 12h (never)")
    _broker_flag(p)
    p = actions.add_parser("list", help="list tokens (never their secrets)", description="List tokens, by name.")
    p.add_argument("--json", action="store_true")
    _broker_flag(p)
    p = actions.add_parser(
        "revoke",
        help="refuse a token from now on and close its connections",
        description="Refuse a token from now on; its open connections are closed at once.",
    )
    p.add_argument("name", metavar="NAME")
    _broker_flag(p)


def _broker_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--broker", metavar="HOST:PORT", default=argparse.SUPPRESS, help="broker address (default: $GRIDD_BROKER)"
    )


async def run(client: Client, args: argparse.Namespace) -> int:
    """Run `gridd token ACTION`."""
    if args.token_action == "create":
        credential, _ = await client.create_token(
            args.name, args.role, queues=args.queues or (), expires_s=args.expires
        )
        print(credential, flush=True)
        return 0
    if args.token_action == "list":
        tokens = await client.tokens()
        print(render.to_json(tokens) if args.json else table(tokens))
        return 0
    token, closed = await client.revoke_token(args.name)
    print(f"revoked token {token.name!r} (role {token.role}); closed {closed} connection{'s' * (closed != 1)}")
    return 0


def table(tokens: list[TokenView]) -> str:
    if not tokens:
        return "no tokens (gridd token create makes one)"
    now = time.time() * 1000
    rows = [["NAME", "ROLE", "QUEUES", "CREATED", "LAST USED", "EXPIRES", "REVOKED"]]
    for t in tokens:
        expires = _when(t.expires_ms)
        if t.expires_ms is not None and t.expires_ms <= now:
            expires += " (expired)"
        rows.append(
            [
                t.name,
                t.role,
                ",".join(t.queues) or "any",
                _when(t.created_ms),
                _when(t.last_used_ms, "never"),
                expires,
                _when(t.revoked_ms),
            ]
        )
    return render.table(rows)


def _when(ms: int | None, none: str = "-") -> str:
    return none if ms is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


def _name(text: str) -> str:
    try:
        return check_worker_name(text, "--name")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _queues(text: str) -> list[str]:
    queues = [q.strip() for q in text.split(",") if q.strip()]
    if not queues:
        raise argparse.ArgumentTypeError(f"--queues wants Q1,Q2,..., got {text!r}")
    return queues


def _expires(text: str) -> float | None:
    try:
        seconds = parse_duration(text, "--expires")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds == 0:
        raise argparse.ArgumentTypeError("--expires must be more than 0 (or never)")
    return seconds

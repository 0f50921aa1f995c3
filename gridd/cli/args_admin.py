"""The flags of `gridd bundle push|list` and `gridd token create|list|revoke`, each action a subcommand.

Their handlers are gridd/cli/bundles.py and gridd/cli/tokens.py, which load the client; this module
does not, so that `gridd --help` stays cheap.
"""

from __future__ import annotations

import argparse

from gridd.cli.parser import Commands, broker_flag

ROLES = ("admin", "submit", "worker", "read")


def add_bundle(commands: Commands) -> None:
    command = commands.client("bundle", "push a directory as a versioned bundle, or list versions")
    actions = command.add_subparsers(dest="bundle_action", metavar="ACTION", required=True)
    p = actions.add_parser(
        "push",
        help="store DIR as the next version of bundle NAME; prints NAME@VERSION",
        description="Store DIR as the next version of bundle NAME (only files the broker lacks travel).",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("dir", metavar="DIR")
    p.add_argument(
        "--follow-links",
        action="store_true",
        help="upload what links leading out of DIR point to (refused by default, naming them)",
    )
    broker_flag(p)
    p = actions.add_parser("list", help="list bundle versions", description="List bundle versions, by name.")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--json", action="store_true")
    broker_flag(p)


def add_token(commands: Commands) -> None:
    command = commands.client("token", "credentials per role: create, list, revoke (admin only)")
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
    broker_flag(p)
    p = actions.add_parser("list", help="list tokens (never their secrets)", description="List tokens, by name.")
    p.add_argument("--json", action="store_true")
    broker_flag(p)
    p = actions.add_parser(
        "revoke",
        help="refuse a token from now on and close its connections",
        description="Refuse a token from now on; its open connections are closed at once.",
    )
    p.add_argument("name", metavar="NAME")
    broker_flag(p)


# The checks below import gridd.config (and the protocol's errors) when they run, for start-up speed: only
# a `gridd token create` that gives these flags pays for it, not every `gridd --help`.


def _name(text: str) -> str:
    from gridd.config import check_worker_name
    from gridd.protocol.errors import ConfigError

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
    from gridd.config import parse_duration
    from gridd.protocol.errors import ConfigError

    try:
        seconds = parse_duration(text, "--expires")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds == 0:
        raise argparse.ArgumentTypeError("--expires must be more than 0 (or never)")
    return seconds

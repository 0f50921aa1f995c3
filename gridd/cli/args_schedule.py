"""The flags of `gridd schedule add|list|show|pause|resume|remove`, each action a subcommand.

`add` takes the submit flags that make sense for a job that runs at every slot (args_jobs.add_job_flags:
no --stdin, --wait, --each, --array or --after). The cron expression and time zone are checked here, before
any connection (gridd/cron.py, imported only when the flags are given: `gridd --help` stays cheap).
Handler: gridd/cli/schedules.py.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from gridd.cli.args_jobs import add_job_flags
from gridd.cli.parser import Commands, Parser, broker_flag

CATCH_UP = ("none", "last", "all")  # gridd/cron.py's, repeated here so that --help does not load cronsim
# protocol/schedule_messages.py's ScheduleName; compiled on first use (re keeps it): start-up of every command
_NAME = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$"


def add_schedule(commands: Commands) -> None:
    command = commands.client("schedule", "periodic jobs kept by the broker: add, list, show, pause, resume, remove")
    actions = command.add_subparsers(
        dest="schedule_action", metavar="ACTION", required=True, parser_class=_CommandAfterDashes
    )
    p = actions.add_parser(
        "add",
        help="submit a command at each slot of a cron expression",
        description="Keep a schedule in the broker: at each slot of the cron expression (in --tz) it submits "
        "the command as a job that names the schedule. Each slot fires once, across broker restarts.",
    )
    p.add_argument("name", type=_name, metavar="NAME")
    p.add_argument(
        "--cron",
        required=True,
        type=_cron,
        metavar="EXPR",
        help="minute hour day-of-month month day-of-week ('0 2 * * *', '*/15 * * * MON-FRI'), or @hourly, @daily, "
        "@weekly, @monthly, @yearly",
    )
    p.add_argument("--tz", type=_tz, default="UTC", metavar="ZONE", help="time zone of the slots (default UTC)")
    p.add_argument(
        "--catch-up",
        choices=CATCH_UP,
        default="last",
        help="slots missed while no broker ran: none (skip), last (fire the latest once, default), all (each, "
        "at most 1000)",
    )
    add_job_flags(p)
    p.add_argument("--bundle", metavar="NAME[@VERSION]", help="run inside this bundle (NAME: its latest at each slot)")
    p.add_argument("argv", nargs="*", metavar="-- COMMAND [ARG...]")  # what follows "--": _CommandAfterDashes
    broker_flag(p)
    p = actions.add_parser("list", help="list schedules", description="List schedules, by name.")
    p.add_argument("--json", action="store_true")
    broker_flag(p)
    p = actions.add_parser("show", help="show a schedule and its latest runs", description="Show a schedule.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true")
    broker_flag(p)
    for action, what in [
        ("pause", "fire no slot until resumed"),
        ("resume", "fire again, from the next slot (the paused ones are not caught up)"),
        ("remove", "forget a schedule (its jobs stay)"),
    ]:
        p = actions.add_parser(action, help=what, description=what[0].upper() + what[1:] + ".")
        p.add_argument("name", metavar="NAME")
        broker_flag(p)


class _CommandAfterDashes(Parser):
    """Everything after the first "--" is the command, whatever it holds. argparse alone cannot say so
    here: after the NAME positional, REMAINDER (as submit has) would swallow `add`'s flags too, and "*"
    matches nothing at NAME and then refuses the command as unrecognized."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        given = list(sys.argv[1:] if args is None else args)
        command: list[str] = []
        if "--" in given:
            cut = given.index("--")
            given, command = given[:cut], given[cut + 1 :]
        parsed, extras = super().parse_known_args(given, namespace)
        if command:
            parsed.argv = [*getattr(parsed, "argv", []), *command]
        return parsed, extras


# The checks below import gridd.cron (cronsim, zoneinfo) when they run, for start-up speed: only a `schedule add`
# pays for it, not every `gridd --help`.


def _name(text: str) -> str:
    if not re.match(_NAME, text):
        raise argparse.ArgumentTypeError(
            f"a schedule's name is letters, digits, '.', '_' and '-' (at most 100), not {text!r}"
        )
    return text


def _cron(text: str) -> str:
    from gridd.cron import CronError, parse

    try:
        return parse(text).expr
    except CronError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tz(text: str) -> str:
    from gridd.cron import CronError, parse

    try:
        parse("@daily", text)
    except CronError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text

"""`gridd`: the entry point. Builds the parser from the command groups, runs the command named, and turns
what ended it into an exit code and one line on stderr. No logic of its own.

Exit codes: 0 ok, 1 the operation failed, 2 usage or settings, 3 cannot connect or authenticate
(gridd/cli/exits.py). The modules each command group lives in:

    args_servers, args_jobs, args_grid, args_admin   the flags of each command (parser.py: what they share)
    flags                                            the flags given, as a configuration layer
    serve, commands, tui_command, web_command, login the commands themselves (bundles, tokens, render below)
    args_autoscale, autoscale, autoscale_policy      workers on demand: flags, the loop, its pure decisions
    exits                                            exit codes, one-line errors
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from gridd import __version__
from gridd.cli import args_admin, args_autoscale, args_grid, args_jobs, args_schedule, args_servers
from gridd.cli.exits import EXIT_USAGE, report
from gridd.cli.exits import root_cause as root_cause  # re-exported: tests and older imports read it here
from gridd.cli.parser import Commands, Parser

# In the order `gridd --help` lists them.
_GROUPS = (
    args_servers.add_broker,
    args_servers.add_worker,
    args_jobs.add_submit,
    args_admin.add_bundle,
    args_admin.add_token,
    args_jobs.add_show_why_jobs,
    args_grid.add_overview,
    args_jobs.add_logs,
    args_jobs.add_wait_and_control,
    args_schedule.add_schedule,
    args_grid.add_watching,
    args_autoscale.add_autoscale,
    args_grid.add_login,
    args_servers.add_demo,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="gridd", description="A batch grid for the machines you already have.")
    parser.add_argument("--version", action="version", version=f"gridd {__version__}")
    parser.add_argument("--config", type=Path, help="config file (default: $XDG_CONFIG_HOME/gridd/gridd.toml)")
    parser.add_argument("--broker", metavar="HOST:PORT", help="broker address, before or after the command")
    commands = Commands(parser)
    for add in _GROUPS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return _run(args)
    except (KeyboardInterrupt, BrokenPipeError, Exception, BaseExceptionGroup) as exc:
        return report(exc)


def _run(args: argparse.Namespace) -> int:
    # Imported here, for start-up speed: each command loads only what it needs (`gridd submit`, `show` and
    # `status` no event loop, structlog, SQLite or Textual; `gridd --version` and `--help` not even the
    # configuration or the client).
    from gridd.cli.flags import config_layer
    from gridd.config import load_config

    config = load_config(args.config, os.environ, config_layer(args))
    if args.command in ("broker", "worker", "demo"):
        from gridd.cli import serve

        return serve.run(args, config)
    if args.command == "tui":
        from gridd.cli.tui_command import run_tui

        return run_tui(config)
    if args.command == "web":
        from gridd.cli.web_command import run_web

        return run_web(config, args.web_listen)
    if args.command == "autoscale":
        from gridd.cli import autoscale

        return autoscale.run(args, config)
    if args.command == "login":
        from gridd.cli.login import run_login

        return run_login(args, config)
    from gridd.cli import quick

    if quick.serves(args):  # submit of one job, show, status: no event loop
        return quick.run(args, config)
    from gridd.cli import commands

    return commands.run(args, config)

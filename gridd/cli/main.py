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
import contextlib
import gc
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from gridd import __version__
from gridd.cli.exits import EXIT_USAGE, report
from gridd.cli.exits import root_cause as root_cause  # re-exported: tests and older imports read it here
from gridd.cli.parser import Commands, Parser

# In the order `gridd --help` lists them: the module of gridd/cli and the function in it that adds each
# group of commands, and the commands it adds (tests/test_cli_imports.py checks that these names are the
# ones each adds). A command named imports its own group's module only (adder).
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("args_servers", "add_broker", ("broker",)),
    ("args_servers", "add_worker", ("worker",)),
    ("args_store", "add_store", ("store",)),
    ("args_jobs", "add_submit", ("submit",)),
    ("args_admin", "add_bundle", ("bundle",)),
    ("args_admin", "add_token", ("token",)),
    ("args_jobs", "add_show", ("show",)),
    ("args_jobs", "add_why", ("why",)),
    ("args_jobs", "add_jobs", ("jobs",)),
    ("args_grid", "add_workers", ("workers",)),
    ("args_grid", "add_status", ("status",)),
    ("args_grid", "add_report", ("report",)),
    ("args_grid", "add_purge", ("purge",)),
    ("args_jobs", "add_logs", ("logs",)),
    ("args_jobs", "add_wait_and_control", ("wait", "cancel", "retry", "hold", "release")),
    ("args_schedule", "add_schedule", ("schedule",)),
    ("args_grid", "add_watching", ("events", "tui", "web")),
    ("args_autoscale", "add_autoscale", ("autoscale",)),
    ("args_grid", "add_login", ("login",)),
    ("args_servers", "add_demo", ("demo",)),
)
_TOP_FLAGS_WITH_VALUE = ("--config", "--broker")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; with `command`, of only the group that adds it, if any (argparse builds
    a parser of some 250 flags in about as long as a short command takes to run: one command needs its own)."""
    parser = Parser(prog="gridd", description="A batch grid for the machines you already have.")
    parser.add_argument("--version", action="version", version=f"gridd {__version__}")
    parser.add_argument("--config", help="config file (default: $XDG_CONFIG_HOME/gridd/gridd.toml)")
    parser.add_argument("--broker", metavar="HOST:PORT", help="broker address, before or after the command")
    commands = Commands(parser)
    for module, function, names in GROUPS:
        if command is None or command in names:
            adder(module, function)(commands)
    return parser


def adder(module: str, function: str) -> Callable[[Commands], None]:
    """The function of gridd/cli/MODULE.py that adds a group of commands to the parser."""
    # Imported here, for start-up speed: a command named builds (and imports) its own group's flags only.
    add: Callable[[Commands], None] = getattr(importlib.import_module(f"gridd.cli.{module}"), function)
    return add


def named_command(argv: Sequence[str]) -> str | None:
    """The command `argv` names, when it can be told without the parser: the first word that is neither a
    top-level flag nor its value, if it is a command. None (the whole parser decides) for anything else:
    --help, --version, an abbreviated flag, an unknown command, none."""
    words = iter(argv)
    for word in words:
        if word in _TOP_FLAGS_WITH_VALUE:
            next(words, None)
        elif not word.startswith(tuple(f"{flag}=" for flag in _TOP_FLAGS_WITH_VALUE)):
            known = any(word in names for _, _, names in GROUPS)
            return word if known else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command `argv` names (None: this process's own command line). Run so, as the program, a
    command asked once (quick.py) ends the process itself when done: see _end_now."""
    words = sys.argv[1:] if argv is None else argv
    # `gridd --version` needs no command's flags: argparse prints the version as soon as it reads the flag.
    parser = build_parser("" if words[:1] == ["--version"] else named_command(words))
    args = parser.parse_args(words)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    asked_once = _asked_once(args)
    ending_now = asked_once and argv is None
    if ending_now:
        gc.disable()  # a short process: its imports make many objects, and no garbage worth a collection
    elif argv is None:
        gc.enable()  # a command that runs on: the program's entry (gridd/cli/program.py) imported with it off
    try:
        code = _run(args, asked_once)
    except (KeyboardInterrupt, BrokenPipeError, Exception, BaseExceptionGroup) as exc:
        code = report(exc)
    if ending_now:
        _end_now(code)
    return code


def _asked_once(args: argparse.Namespace) -> bool:
    """A command that asks the broker one thing (quick.py): a submit not waiting (one job, or --each's and
    --array's), show, status. --max-running without --each or --array is refused by commands.py."""
    if args.command == "submit":
        return not args.wait and (args.max_running is None or bool(args.each or args.array))
    return args.command in ("show", "status")


def _end_now(code: int) -> NoReturn:
    """End the process without the interpreter's teardown, which frees every object of every module one by
    one: for a command asked once, about as long as its request (mypy ends its runs the same way). Only such
    a command ends so: its process holds nothing else to finish (no thread, no atexit handler, no log).
    What it wrote is flushed first: a failure to (a reader gone, a full disk) is reported as if the command
    had raised it."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        code = code or report(exc)
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    os._exit(code)


def _import_msgspec_alone() -> None:
    """Import msgspec without typing_extensions, which it imports only if present, for the helpers of
    TypedDicts and dataclasses (gridd's messages and settings are Structs: without it, msgspec uses
    typing's own, the same on Python 3.11). typing_extensions imports `inspect` (with ast, dis, tokenize):
    about 5 ms of a one-shot command's start-up. Anything imported later gets typing_extensions as usual."""
    if "msgspec" in sys.modules or "typing_extensions" in sys.modules:
        return
    sys.modules["typing_extensions"] = None  # type: ignore[assignment]  # `import` raises ImportError
    try:
        import msgspec  # noqa: F401
    except ImportError:
        pass  # a msgspec that needs it after all: imported as usual, below
    finally:
        del sys.modules["typing_extensions"]


def _run(args: argparse.Namespace, asked_once: bool) -> int:
    # Imported here, for start-up speed: each command loads only what it needs (`gridd submit`, `show` and
    # `status` no event loop, structlog, SQLite or Textual; `gridd --version` and `--help` not even the
    # configuration or the client).
    if asked_once:
        _import_msgspec_alone()
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
    if args.command == "store":
        from gridd.cli.store_command import run_store

        return run_store(args, config)
    if args.command == "login":
        from gridd.cli.login import run_login

        return run_login(args, config)
    if asked_once:  # no event loop
        from gridd.cli import quick

        return quick.run(args, config)
    from gridd.cli import commands

    return commands.run(args, config)

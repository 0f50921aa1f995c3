"""The command-line parser's own behaviour, and the flags several commands share.

Rule: nothing here (nor in the args_* modules that describe each command group) imports more than
argparse and the standard library at module level: `gridd --version` and `gridd --help` build the whole
parser, and must cost little more than Python's own start-up.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NoReturn

from gridd.cli.exits import EXIT_USAGE


class Parser(argparse.ArgumentParser):
    """argparse's errors as one line, exit 2, naming the command whose --help to read."""

    commands: frozenset[str] = frozenset()  # the top parser's command names (see Commands)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        command = self.prog
        if command == "gridd":  # e.g. an unknown flag after a command is reported by the top parser
            named = [a for a in sys.argv[1:] if a in self.commands]
            command = f"gridd {named[0]}" if named else "gridd"
        self.exit(EXIT_USAGE, f"gridd: {message} (see {command} --help)\n")


class Formatter(argparse.HelpFormatter):
    """argparse's own help layout, the terminal's width read without shutil.

    Why: argparse makes a formatter for every flag it is given (to check the flag's metavar), and its own
    imports shutil (with zlib, bz2 and lzma) to ask the width: a millisecond and more of the start-up of a
    command that prints no help at all."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ) -> None:
        # As argparse does: the width of the terminal, less 2.
        super().__init__(prog, indent_increment, max_help_position, _columns() - 2 if width is None else width)


def _columns() -> int:
    """shutil.get_terminal_size().columns: $COLUMNS, else the width of the terminal on stdout, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0 and sys.__stdout__ is not None:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class Commands:
    """Adds the commands to the top parser, in the order `gridd --help` lists them."""

    def __init__(self, top: Parser) -> None:
        self._top = top
        self._sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    def add(self, name: str, help: str) -> argparse.ArgumentParser:
        """A command that does not speak to a broker as a client (broker, demo)."""
        self._top.commands = self._top.commands | {name}
        return self._sub.add_parser(name, help=help, description=help)

    def client(self, name: str, help: str) -> argparse.ArgumentParser:
        """A command that connects to a broker: it takes the broker and credential flags."""
        p = self.add(name, help)
        broker_flag(p)
        p.add_argument("--token-file", metavar="FILE", help="read the credential from FILE (mode 0600)")
        p.add_argument("--insecure", action="store_true", help="plain TCP, for a broker run with --insecure")
        return p


def broker_flag(p: argparse.ArgumentParser) -> None:
    """--broker after the command (and after a subcommand's action) as well as before it."""
    # SUPPRESS: a --broker given before the command is not overwritten by this one's default.
    p.add_argument(
        "--broker",
        metavar="HOST:PORT",
        default=argparse.SUPPRESS,
        help="broker address, or several separated by commas, the first that answers used (default: $GRIDD_BROKER)",
    )


def logging_flags(p: argparse.ArgumentParser) -> None:
    """The log flags of the long-running commands (broker, worker)."""
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="auto", choices=["auto", "logfmt", "console", "json"])

"""The client commands stay cheap to start: importing the CLI loads neither Textual, nor structlog, nor
SQLite; `gridd --version` and `gridd --help` load not even the client or the configuration; `gridd submit`,
`show` and `status` start no event loop, nor load the standard modules that only other commands need;
and `python -m gridd --help` works. (How long each takes: benchmarks/, scenario `cli`.)"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from gridd.cli.main import GROUPS, adder, build_parser, named_command
from gridd.cli.parser import Commands, Parser
from tests.e2e.conftest import Grid
from tests.e2e.conftest import grid as grid  # the fixture: a real `gridd broker` subprocess

HEAVY = ["textual", "structlog", "sqlite3"]
LIGHTER = ["gridd.client", "gridd.config", "anyio", "ssl"]  # what a command that connects needs
PROTOCOL = ["gridd.protocol", "msgspec"]  # what a command that speaks to a broker needs
# What a command asked once (client/oneshot.py) does without: an event loop and the async client; and,
# once the broker's CA is kept, the certificate parser of a first contact.
EVENT_LOOP = ["asyncio", "anyio", "gridd.client.api", "gridd.client.connection", "cryptography"]
# Nor what other commands, or the first contact with a broker, need: each would add a millisecond or more
# to every command a person types (inspect, with ast and dis, comes with dataclasses and typing_extensions;
# shutil, with bz2 and lzma, with argparse's own help formatter; hashlib and secrets, which make digests
# and secrets). The rest of what they import is listed by the `cli` benchmark's probe, with its cost.
START_UP = ["inspect", "dataclasses", "typing_extensions", "ast", "shutil", "bz2", "lzma", "hashlib", "secrets"]
# Nor pathlib (with urllib.parse and ipaddress, ~2.5 ms): settings hold paths as strings (gridd/config.py).
PATHS = ["pathlib", "urllib.parse", "ipaddress"]
REPO = Path(__file__).resolve().parents[1]
# Nor the messages of other commands (each message module ~0.3-0.5 ms): a command imports the modules of
# the request it sends and the reply it reads (gridd/cli/quick.py), and the whole union (protocol.messages)
# only for a frame it does not expect.
OTHER_MESSAGES = [
    f"gridd.protocol.{name}"
    for name in ("messages", "schedule_messages", "worker_messages", "blob_messages", "stream_messages")
]
# What one of them needs and another does not: status renders no job (gridd/cli/render_status.py).
NOT_NEEDED = {
    "submit": ["gridd.protocol.grid_messages"],
    "show": ["gridd.protocol.grid_messages"],
    "status": ["gridd.protocol.job_messages", "gridd.cli.render", "shlex", "gridd.tui.formatting"],
}


def without_site(code: str) -> list[str]:
    """`python -c CODE` as a user's installed gridd runs: site-packages on the path, but none of its .pth
    files run (this venv's editable install puts an import hook in every process, and the hook imports
    pathlib itself), and gridd imported from this tree."""
    paths = [str(REPO), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return [sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {paths!r}\n{code}"]


def test_importing_the_cli_and_its_client_commands_loads_no_tui_logging_or_database_code() -> None:
    code = f"import sys, gridd.cli.main, gridd.cli.commands; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"loaded at import: {done.stdout.strip()}"


def test_version_and_help_load_neither_the_client_nor_the_configuration_nor_the_protocol() -> None:
    # main() builds the whole parser, every command group's flags included, before it reads a flag.
    unwanted = [*HEAVY, *LIGHTER, *PROTOCOL, "shutil"]  # shutil: see START_UP
    for flag in ["--version", "--help"]:
        code = (
            "import sys, gridd.cli.main\n"
            "try:\n"
            f"    gridd.cli.main.main([{flag!r}])\n"
            "except SystemExit:\n"
            "    pass\n"
            f"print(','.join(m for m in {unwanted!r} if m in sys.modules), file=sys.stderr)"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stderr.strip() == "", f"gridd {flag} loaded: {done.stderr.strip()}"


def test_gridd_help_lists_the_commands_and_exits_0() -> None:
    done = subprocess.run([sys.executable, "-m", "gridd", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in ["broker", "worker", "submit", "show", "jobs", "cancel", "tui"]:
        assert command in done.stdout


def test_submit_show_and_status_start_no_event_loop_and_load_only_what_they_need(grid: Grid) -> None:
    grid.start_broker()
    job = grid.submit("true")  # also the first contact, which keeps the broker's CA
    env = {**grid.env, "GRIDD_BROKER": str(grid.addr)}
    for argv in (
        ["submit", "--", "true"],
        ["submit", "--array", "1-3", "--max-running", "2", "--", "true"],  # a group, in as few requests as fit
        ["show", job],
        ["show", job, "--json"],
        ["status"],
        ["status", "--json"],
    ):
        unwanted = [*HEAVY, *EVENT_LOOP, *START_UP, *PATHS, *OTHER_MESSAGES, *NOT_NEEDED[argv[0]]]
        code = (
            "import gridd.cli.main\n"
            f"code = gridd.cli.main.main({argv!r})\n"
            f"print(','.join(m for m in {unwanted!r} if m in sys.modules), file=sys.stderr)\n"
            "raise SystemExit(code)"
        )
        done = subprocess.run(without_site(code), capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
        assert done.returncode == 0, done.stderr
        assert done.stderr.strip() == "", f"gridd {' '.join(argv)} loaded: {done.stderr.strip()}"


def test_each_command_group_is_listed_with_the_commands_it_adds() -> None:
    # main() builds only the group of the command named: the list must name every command of each group.
    for module, function, names in GROUPS:
        parser = Parser(prog="gridd")
        adder(module, function)(Commands(parser))
        assert parser.commands == frozenset(names), function


def test_a_command_reads_its_flags_alone_as_among_every_command() -> None:
    def helped(parser: argparse.ArgumentParser, argv: list[str]) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            parser.parse_args(argv)
        return out.getvalue()

    for _, _, names in GROUPS:
        for name in names:
            assert named_command(["--broker", "h:1", name, "--json"]) == name
            assert helped(build_parser(name), [name, "--help"]) == helped(build_parser(), [name, "--help"]), name
    assert named_command(["--help"]) is None and named_command(["nosuch"]) is None

"""`gridd`: argument parsing, settings, exit codes and one-line errors. No logic of its own.

Exit codes: 0 ok, 1 the operation failed, 2 usage or settings, 3 cannot connect or authenticate.
Each command imports what it needs when it runs, so that `gridd submit` costs little more than
Python's own start-up (no structlog, no SQLite, no Textual).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gridd import __version__
from gridd.printable import printable
from gridd.protocol.errors import AuthFailed, ConfigError, ConnectionLost, GriddError, OperationRefused

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONNECT = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own errors: one line, exit 2
        command = self.prog
        if command == "gridd":  # e.g. an unknown flag after a command is reported by the top parser
            named = [a for a in sys.argv[1:] if a in _COMMAND_NAMES]
            command = f"gridd {named[0]}" if named else "gridd"
        self.exit(EXIT_USAGE, f"gridd: {message} (see {command} --help)\n")


_COMMAND_NAMES: set[str] = set()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gridd", description="A batch grid for the machines you already have.")
    parser.add_argument("--version", action="version", version=f"gridd {__version__}")
    parser.add_argument("--config", type=Path, help="config file (default: $XDG_CONFIG_HOME/gridd/gridd.toml)")
    parser.add_argument("--broker", metavar="HOST:PORT", help="broker address, before or after the command")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        _COMMAND_NAMES.add(name)
        return sub.add_parser(name, help=help, description=help)

    def client(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        # SUPPRESS: a --broker given before the command is not overwritten by this one's default.
        p.add_argument(
            "--broker", metavar="HOST:PORT", default=argparse.SUPPRESS, help="broker address (default: $GRIDD_BROKER)"
        )
        p.add_argument("--token-file", type=Path, metavar="FILE", help="read the credential from FILE (mode 0600)")
        p.add_argument("--insecure", action="store_true", help="plain TCP, for a broker run with --insecure")
        return p

    def logging_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
        p.add_argument("--log-format", default="auto", choices=["auto", "logfmt", "console", "json"])

    p = command("broker", "run the broker: the jobs, their leases, the event stream")
    p.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (default 127.0.0.1:7420)")
    p.add_argument("--data-dir", type=Path, metavar="DIR", help="where the database and token live")
    p.add_argument("--lease-ttl", type=float, metavar="SECONDS", help="lease time-to-live (default 30)")
    p.add_argument(
        "--max-bundle-bytes", type=int, metavar="BYTES", help="a bundle version's files in all, at most (default 4 GiB)"
    )
    p.add_argument(
        "--keep", metavar="DURATION", help="remove finished jobs older than this: 30d, 12h, 90m (default 30d; never)"
    )
    p.add_argument("--max-command-bytes", type=int, metavar="N", help="a job's argv+env at most (default 256 KiB)")
    p.add_argument("--max-stdin-bytes", type=int, metavar="N", help="a job's --stdin at most (default 4 MiB)")
    p.add_argument(
        "--advertise",
        action="append",
        metavar="HOST",
        help="a name or IP peers dial it by, for its certificate (repeatable)",
    )
    p.add_argument(
        "--insecure", action="store_true", help="plain TCP, no TLS: credentials and data in the clear (tests only)"
    )
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics, no authentication (default: off)",
    )
    logging_flags(p)

    p = client(command("worker", "run a worker on this machine"))
    p.add_argument("--slots", type=int, metavar="N", help="jobs to run at once (default 1)")
    p.add_argument("--queue", action="append", metavar="NAME", help="queue to serve (repeatable; default 'default')")
    p.add_argument("--name", metavar="NAME", help="worker name (default: the host name)")
    p.add_argument(
        "--tag", action="append", metavar="KEY=VALUE", help="a label jobs may --require (repeatable; os, arch built in)"
    )
    p.add_argument("--cpus", type=int, metavar="N", help="cpus its jobs may ask for in all (default: max(slots, cpus))")
    p.add_argument("--memory", metavar="SIZE", help="memory its jobs may ask for in all, e.g. 16G (default: the RAM)")
    p.add_argument("--work-dir", type=Path, metavar="DIR", help="where jobs' working directories are made")
    p.add_argument("--grace", type=float, metavar="SECONDS", help="on SIGTERM, time running jobs get (default 10)")
    p.add_argument(
        "--tasks", action="append", metavar="MODULE", help="also run the @gridd.task functions of MODULE (repeatable)"
    )
    p.add_argument(
        "--run-as", metavar="USER", help="started as root: run jobs as USER (default nobody; root only when named)"
    )
    p.add_argument(
        "--run-as-pool",
        metavar="USER,USER,...",
        help="started as root: each running job as a user of its own (one per slot)",
    )
    lend = p.add_argument_group("lending the machine (off unless --when-idle, --idle-probe or --window)")
    lend.add_argument("--when-idle", action="store_true", help="take jobs only while the owner is away")
    lend.add_argument("--max-load", type=float, metavar="FRACTION", help="owner CPU load that counts as busy (0.3)")
    lend.add_argument("--idle-after", type=float, metavar="SECONDS", help="no input this long is away (300)")
    lend.add_argument("--idle-probe", metavar="COMMAND", help="ask COMMAND instead: exit 0 idle, else busy")
    lend.add_argument("--window", metavar="HH:MM-HH:MM", help="take jobs only in these local hours, e.g. 20:00-06:00")
    lend.add_argument(
        "--on-busy", choices=["suspend", "vacate"], help="when taken back: stop jobs, or hand them back (suspend)"
    )
    lend.add_argument("--suspend-max", type=float, metavar="SECONDS", help="vacate jobs suspended this long")
    lend.add_argument("--resume-after", type=float, metavar="SECONDS", help="owner away this long to resume (60)")
    lend.add_argument("--probe-every", type=float, metavar="SECONDS", help="look at the host this often (5)")
    logging_flags(p)

    p = client(command("submit", "submit a command as a job; prints its id"))
    p.add_argument("--queue", default="default", metavar="NAME")
    p.add_argument("--priority", type=int, default=0, metavar="INT", help="larger runs first (default 0)")
    p.add_argument("--max-attempts", type=int, default=3, metavar="N", help="attempts before failing (default 3)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="end an attempt after this long (exit 124)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="environment (repeatable)")
    p.add_argument("--stdin", action="store_true", help="send this standard input to the job")
    p.add_argument("--wait", action="store_true", help="wait; print the job's output; exit with its status")
    p.add_argument("--cpus", type=int, default=1, metavar="N", help="cpus the job takes on its worker (default 1)")
    p.add_argument("--memory", metavar="SIZE", help="memory the job takes on its worker: 512M, 2G (default: none)")
    p.add_argument(
        "--require",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run only on a worker with this tag (repeatable), e.g. os=linux",
    )
    many = p.add_mutually_exclusive_group()
    many.add_argument("--each", metavar="FILE", help="one job per non-empty line of FILE (- for stdin); {} = the line")
    many.add_argument("--array", metavar="A-B[:STEP]", help="one job per index; {} = the index")
    p.add_argument("--max-running", type=int, metavar="N", help="with --each/--array: at most N run at once")
    p.add_argument(
        "--after",
        action="append",
        default=[],
        metavar="JOB",
        help="wait until JOB (or group) has succeeded (repeatable)",
    )
    p.add_argument("--bundle", metavar="NAME[@VERSION]", help="run inside this bundle (default version: the latest)")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG...]")

    from gridd.cli.bundles import add_parser as add_bundle_parser

    add_bundle_parser(client(command("bundle", "push a directory as a versioned bundle, or list versions")))

    from gridd.cli.tokens import add_parser as add_token_parser

    add_token_parser(client(command("token", "credentials per role: create, list, revoke (admin only)")))

    p = client(command("show", "show one job"))
    p.add_argument("job")
    p.add_argument("--json", action="store_true")

    p = client(command("why", "why a job is not running: its own causes and each worker's"))
    p.add_argument("job")
    p.add_argument("--json", action="store_true")

    p = client(command("jobs", "list jobs, most recent first"))
    p.add_argument("--state", metavar="STATE")
    p.add_argument("--queue", metavar="NAME")
    p.add_argument("--group", metavar="ID", help="only the jobs of this group")
    p.add_argument("--limit", type=int, default=1000, metavar="N", help="at most N (default 1000; 0 = all)")
    p.add_argument("--json", action="store_true")

    p = client(command("workers", "list connected workers"))
    p.add_argument("--json", action="store_true")

    p = client(command("status", "jobs by state and connected workers"))
    p.add_argument("--json", action="store_true")

    p = client(command("report", "accounting: jobs, CPU-hours and wall-hours, and what lent desktops gave"))
    p.add_argument(
        "--since", metavar="DURATION", help="attempts that ended in the last DURATION, e.g. 7d (default: all)"
    )
    p.add_argument("--by", choices=("owner", "queue", "worker"), default="owner", help="one row per (default owner)")
    p.add_argument("--json", action="store_true")

    p = client(command("purge", "remove finished jobs older than the broker's --keep (or --older-than)"))
    p.add_argument("--older-than", metavar="DURATION", help="e.g. 7d, 12h, 90m, 0 (all finished jobs)")
    p.add_argument("--json", action="store_true")

    p = client(command("logs", "write a job's captured stdout (or stderr) to stdout"))
    p.add_argument("job")
    p.add_argument("--stderr", action="store_true")
    p.add_argument("--raw", action="store_true", help="to a terminal too, byte for byte (escape sequences act)")

    for name, what in [
        ("wait", "wait until every job named has finished (exit 1 if any did not succeed)"),
        ("cancel", "cancel jobs (running ones are stopped)"),
        ("retry", "queue failed or cancelled jobs again"),
        ("hold", "keep queued jobs from starting"),
        ("release", "let held jobs start"),
    ]:
        client(command(name, what)).add_argument(
            "jobs", nargs="+", metavar="JOB", help="job or group ids; - reads them from stdin, one per line"
        )

    p = client(command("events", "print events as they happen"))
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--kind", action="append", metavar="KIND", help="only these kinds (prefix, e.g. job. or worker.)")
    p.add_argument("--job", action="append", metavar="JOB")
    p.add_argument("--worker", action="append", metavar="NAME")
    p.add_argument("--queue", action="append", metavar="NAME")

    client(command("tui", "live dashboard of the grid"))

    p = client(command("web", "the dashboard in a browser (prints a one-time login link on stderr)"))
    p.add_argument(
        "--listen", dest="web_listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="default: 127.0.0.1:8080"
    )

    p = client(command("login", "check a credential against the broker and keep it for later commands"))
    p.add_argument("credential", nargs="?", metavar="CREDENTIAL|-", help="the credential (- or none: read stdin)")

    p = command("demo", "run a broker and workers in this process on a temporary dir, and a batch of jobs")
    p.add_argument("--jobs", type=int, default=200, metavar="N")
    p.add_argument("--workers", type=int, default=2, metavar="N")
    p.add_argument("--slots", type=int, default=2, metavar="N")
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
        return _report(exc)


def _report(raised: BaseException) -> int:
    """One line on stderr and the exit code for what ended the command (the cause, not its wrapping)."""
    exc = root_cause(raised)
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, BrokenPipeError):
        _silence_stdout()
        return EXIT_FAILED
    if isinstance(exc, GriddError):
        print(f"gridd: {printable(str(exc))}", file=sys.stderr)  # it may quote what a peer sent
        return exit_code_for(exc)
    # The person sees one line; GRIDD_DEBUG=1 shows the traceback (of the whole group, if one).
    if os.environ.get("GRIDD_DEBUG"):
        _log_crash(raised)
    hint = "" if os.environ.get("GRIDD_DEBUG") else " (GRIDD_DEBUG=1 shows the traceback)"
    print(f"gridd: internal error: {type(exc).__name__}: {printable(str(exc))}{hint}", file=sys.stderr)
    return EXIT_FAILED


def root_cause(exc: BaseException) -> BaseException:
    """What a person should hear about when a task group wrapped it (maybe in several layers of groups):
    the first GriddError among the leaves, else the first other Exception, else the first leaf
    (a KeyboardInterrupt, say). A bare exception is its own cause."""
    leaves = list(_leaves(exc))
    for wanted in (GriddError, Exception):
        for leaf in leaves:
            if isinstance(leaf, wanted):
                return leaf
    return leaves[0] if leaves else exc


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, ConnectionLost | AuthFailed):
        return EXIT_CONNECT
    if isinstance(exc, ConfigError):
        return EXIT_USAGE
    if isinstance(exc, OperationRefused):
        return EXIT_FAILED
    return EXIT_FAILED


def _run(args: argparse.Namespace) -> int:
    from gridd.config import load_config

    config = load_config(args.config, os.environ, _flags(args))
    if args.command in ("broker", "worker", "demo"):
        from gridd.cli import serve

        return serve.run(args, config)
    if args.command == "tui":
        from gridd.cli.tui_command import run_tui

        return run_tui(config)
    if args.command == "web":
        from gridd.cli.web_command import run_web

        return run_web(config, args.web_listen)
    if args.command == "login":
        from gridd.cli.login import run_login

        return run_login(args, config)
    from gridd.cli import commands

    return commands.run(args, config)


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    """The command line as a config layer (None means: not given)."""
    get = vars(args).get
    from gridd.resources import parse_size_mb

    tags = dict(_key_value(t, "--tag") for t in get("tag") or [])
    memory: str | None = get("memory")
    insecure = get("insecure") or None
    token = _token_file(get("token_file"))
    return {
        "broker": {
            "listen": get("listen"),
            "advertise": get("advertise"),
            "insecure": insecure if args.command == "broker" else None,
            "data_dir": get("data_dir"),
            "lease_ttl_s": get("lease_ttl"),
            "max_bundle_bytes": get("max_bundle_bytes"),
            "keep_s": _keep(get("keep")),
            "max_command_bytes": get("max_command_bytes"),
            "max_stdin_bytes": get("max_stdin_bytes"),
            "metrics": get("metrics"),
        },
        "worker": {
            "broker": get("broker"),
            "insecure": insecure,
            "token": token,
            "slots": get("slots"),
            "queues": get("queue") if args.command == "worker" else None,
            "name": get("name"),
            "tags": tags or None,
            "work_dir": get("work_dir"),
            "grace_s": get("grace"),
            "tasks": get("tasks"),
            "when_idle": get("when_idle") or None,
            "max_load": get("max_load"),
            "idle_after_s": get("idle_after"),
            "idle_probe": _command(get("idle_probe"), "--idle-probe"),
            "window": get("window"),
            "on_busy": get("on_busy"),
            "suspend_max_s": get("suspend_max"),
            "resume_after_s": get("resume_after"),
            "probe_every_s": get("probe_every"),
            "cpus": get("cpus") if args.command == "worker" else None,
            "memory_mb": parse_size_mb(memory) if args.command == "worker" and memory is not None else None,
            "run_as": get("run_as"),
            "run_as_pool": _user_list(get("run_as_pool"), "--run-as-pool"),
        },
        "client": {"broker": get("broker"), "insecure": insecure, "token": token},
    }


def _token_file(path: Path | None) -> str | None:
    """--token-file: the credential it holds (refused if others may read it)."""
    if path is None:
        return None
    from gridd.config import read_secret_file

    try:
        return read_secret_file(path, "token file")
    except FileNotFoundError:
        raise ConfigError(f"token file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read token file {path}: {exc.strerror or exc}") from None


def _keep(text: str | None) -> float | None:
    """--keep as seconds; `never` (and 0) as 0, which turns retention off (None here means: not given)."""
    from gridd.config import parse_duration

    if text is None:
        return None
    seconds = parse_duration(text, "--keep")
    return 0.0 if seconds is None else seconds


def _key_value(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"{flag} wants KEY=VALUE, got {text!r}")
    return key, value


def _user_list(text: str | None, flag: str) -> list[str] | None:
    """USER1,USER2,... as a list (None: not given)."""
    if text is None:
        return None
    users = [u.strip() for u in text.split(",")]
    if not all(users):
        raise ConfigError(f"{flag} wants user names separated by commas, got {text!r}")
    return users


def _command(text: str | None, flag: str) -> list[str] | None:
    """A command line given as one argument, split the way a shell would (without running one)."""
    if text is None:
        return None
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}") from None
    if not argv:
        raise ConfigError(f"{flag} wants a command")
    return argv


def _log_crash(exc: BaseException) -> None:
    try:
        import structlog

        from gridd.logs import configure_logging

        configure_logging("error", "logfmt")
        structlog.get_logger().error("cli.crashed", exc_info=exc)
    except Exception:  # noqa: BLE001 - logging must not turn one error into two
        pass


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())

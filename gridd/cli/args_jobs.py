"""The flags of the commands about jobs: submit, show, why, jobs, logs; wait, cancel, retry, hold, release."""

from __future__ import annotations

import argparse

from gridd.cli.parser import Commands


def add_submit(commands: Commands) -> None:
    p = commands.client("submit", "submit a command as a job; prints its id")
    add_job_flags(p)
    p.add_argument("--stdin", action="store_true", help="send this standard input to the job")
    p.add_argument("--wait", action="store_true", help="wait; print the job's output; exit with its status")
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
    p.add_argument(
        "--retry-on",
        metavar="CAUSES",
        help="retry only these failures, e.g. exit:75,exit:64-78,signal:9,timeout,lost,error (default: any)",
    )
    p.add_argument(
        "--retry-delay",
        metavar="DURATION",
        help="first retry after this long (e.g. 10s), each next one twice as long, up to 1h (default: the broker's)",
    )
    p.add_argument("--key", metavar="KEY", help="submit at most once: the same KEY again prints the first's ids")
    p.add_argument("--key-ttl", metavar="DURATION", help="keep --key this long: 90m, 30d (default 7d)")
    later = p.add_mutually_exclusive_group()  # a delayed job: `scheduled` until then (see README "Delayed jobs")
    later.add_argument(
        "--at", metavar="TIME", help="not before TIME, ISO 8601: 2026-12-24T02:00 (local time), ...Z, ...+01:00"
    )
    later.add_argument("--in", dest="in_", metavar="DURATION", help="not before DURATION from now: 90m, 2h, 1d")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG...]")


def add_job_flags(p: argparse.ArgumentParser) -> None:
    """What a job is and needs: the flags of submit that `schedule add` takes too (args_schedule.py)."""
    p.add_argument("--queue", default="default", metavar="NAME")
    p.add_argument("--priority", type=int, default=0, metavar="INT", help="larger runs first (default 0)")
    p.add_argument("--max-attempts", type=int, default=3, metavar="N", help="attempts before failing (default 3)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="end an attempt after this long (exit 124)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="environment (repeatable)")
    p.add_argument("--cpus", type=int, default=1, metavar="N", help="cpus the job takes on its worker (default 1)")
    p.add_argument("--memory", metavar="SIZE", help="memory the job takes on its worker: 512M, 2G (default: none)")
    p.add_argument(
        "--require",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run only on a worker with this tag (repeatable), e.g. os=linux",
    )
    p.add_argument(
        "--gang", type=int, metavar="N", help="run N copies together on N distinct workers (GRIDD_GANG_RANK 0..N-1)"
    )


def add_show(commands: Commands) -> None:
    p = commands.client("show", "show one job")
    p.add_argument("job")
    p.add_argument("--json", action="store_true")


def add_why(commands: Commands) -> None:
    p = commands.client("why", "why a job is not running: its own causes and each worker's")
    p.add_argument("job")
    p.add_argument("--json", action="store_true")


def add_jobs(commands: Commands) -> None:
    p = commands.client("jobs", "list jobs, most recent first")
    p.add_argument("--state", metavar="STATE")
    p.add_argument("--queue", metavar="NAME")
    p.add_argument("--group", metavar="ID", help="only the jobs of this group")
    p.add_argument("--limit", type=int, default=1000, metavar="N", help="at most N (default 1000; 0 = all)")
    p.add_argument("--json", action="store_true")


def add_logs(commands: Commands) -> None:
    p = commands.client("logs", "write a job's captured stdout (or stderr) to stdout")
    p.add_argument("job")
    p.add_argument("--stderr", action="store_true")
    p.add_argument("--raw", action="store_true", help="to a terminal too, byte for byte (escape sequences act)")


def add_wait_and_control(commands: Commands) -> None:
    for name, what in [
        ("wait", "wait until every job named has finished (exit 1 if any did not succeed)"),
        ("cancel", "cancel jobs (running ones are stopped)"),
        ("retry", "queue failed or cancelled jobs again"),
        ("hold", "keep queued jobs from starting"),
        ("release", "let held jobs start"),
    ]:
        commands.client(name, what).add_argument(
            "jobs", nargs="+", metavar="JOB", help="job or group ids; - reads them from stdin, one per line"
        )

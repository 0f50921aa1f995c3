"""The flags of the commands about the grid as a whole: workers, status, report, purge; events and the
dashboards (tui, web); login."""

from __future__ import annotations

from gridd.cli.parser import Commands


def add_workers(commands: Commands) -> None:
    p = commands.client("workers", "list connected workers")
    p.add_argument("--json", action="store_true")


def add_status(commands: Commands) -> None:
    p = commands.client("status", "jobs by state and connected workers")
    p.add_argument("--json", action="store_true")


def add_report(commands: Commands) -> None:
    p = commands.client("report", "accounting: jobs, CPU-hours and wall-hours, and what lent desktops gave")
    p.add_argument(
        "--since", metavar="DURATION", help="attempts that ended in the last DURATION, e.g. 7d (default: all)"
    )
    p.add_argument("--by", choices=("owner", "queue", "worker"), default="owner", help="one row per (default owner)")
    p.add_argument("--json", action="store_true")


def add_purge(commands: Commands) -> None:
    p = commands.client("purge", "remove finished jobs older than the broker's --keep (or --older-than)")
    p.add_argument("--older-than", metavar="DURATION", help="e.g. 7d, 12h, 90m, 0 (all finished jobs)")
    p.add_argument("--json", action="store_true")


def add_watching(commands: Commands) -> None:
    p = commands.client("events", "print events as they happen")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--kind", action="append", metavar="KIND", help="only these kinds (prefix, e.g. job. or worker.)")
    p.add_argument("--job", action="append", metavar="JOB")
    p.add_argument("--worker", action="append", metavar="NAME")
    p.add_argument("--queue", action="append", metavar="NAME")

    commands.client("tui", "live dashboard of the grid")

    p = commands.client("web", "the dashboard in a browser (prints a one-time login link on stderr)")
    p.add_argument(
        "--listen", dest="web_listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="default: 127.0.0.1:8080"
    )


def add_login(commands: Commands) -> None:
    p = commands.client("login", "check a credential against the broker and keep it for later commands")
    p.add_argument("credential", nargs="?", metavar="CREDENTIAL|-", help="the credential (- or none: read stdin)")

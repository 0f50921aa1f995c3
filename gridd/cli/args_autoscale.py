"""The flags of `gridd autoscale`: workers on demand. Handler: gridd/cli/autoscale.py.

Numbers and durations are checked here, before any connection (stdlib only: `gridd --help` stays cheap);
a bad one, or --max below --min, is one line and exit 2.
"""

from __future__ import annotations

import argparse

from gridd.cli.parser import Commands, logging_flags

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def add_autoscale(commands: Commands) -> None:
    p = commands.client(
        "autoscale",
        "start workers when queued jobs wait, stop them when idle (runs --up and --down commands)",
    )
    p.add_argument(
        "--up",
        required=True,
        metavar="CMD",
        help="shell command that starts workers; gets the number wanted as its last argument and in "
        "GRIDD_AUTOSCALE_COUNT",
    )
    p.add_argument(
        "--down",
        required=True,
        metavar="CMD",
        help="shell command that stops workers gracefully (SIGTERM); gets their names as arguments and in "
        "GRIDD_AUTOSCALE_WORKERS",
    )
    p.add_argument("--min", dest="min_workers", type=_count, default=0, metavar="N", help="workers kept (default 0)")
    p.add_argument("--max", dest="max_workers", type=_count, default=10, metavar="N", help="at most (default 10)")
    p.add_argument("--queue", metavar="NAME", help="only jobs of this queue, workers serving it (default: all)")
    p.add_argument(
        "--after",
        type=_duration,
        default=30.0,
        metavar="DURATION",
        help="start workers once a job no worker can take has waited this long; also the wait between two "
        "starts (default 30s)",
    )
    p.add_argument(
        "--idle", type=_duration, default=300.0, metavar="DURATION", help="stop workers idle this long (default 5m)"
    )
    p.add_argument(
        "--warmup",
        type=_duration,
        default=300.0,
        metavar="DURATION",
        help="workers asked for count toward --max until they connect or for this long (default 5m)",
    )
    p.add_argument(
        "--every", type=_positive_duration, default=5.0, metavar="DURATION", help="look this often (default 5s)"
    )
    logging_flags(p)


def check_bounds(args: argparse.Namespace) -> str | None:
    """The problem with the flags taken together (None: none)."""
    if args.max_workers < 1:
        return "--max must be at least 1"
    if args.max_workers < args.min_workers:
        return f"--max ({args.max_workers}) must not be below --min ({args.min_workers})"
    return None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _duration(text: str) -> float:
    value = text.strip().lower()
    number, unit = (value[:-1], value[-1]) if value[-1:] in _UNITS and value[-1:] else (value, "")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a duration such as 30s, 5m or 1h, got {text!r}") from None
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a duration of 0 or more, got {text!r}")
    return seconds


def _positive_duration(text: str) -> float:
    seconds = _duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
    return seconds

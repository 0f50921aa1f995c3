"""The flags of the commands that run a part of the grid in this process: broker, worker, demo."""

from __future__ import annotations

from gridd.cli.parser import Commands, logging_flags


def add_broker(commands: Commands) -> None:
    p = commands.add("broker", "run the broker: the jobs, their leases, the event stream")
    p.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (default 127.0.0.1:7420)")
    p.add_argument("--data-dir", metavar="DIR", help="where the database and token live")
    p.add_argument(
        "--store",
        metavar="URL",
        help="keep the jobs in PostgreSQL at postgresql://USER@HOST/DB, shared by several brokers"
        " (default: SQLite in the data dir; $GRIDD_STORE)",
    )
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


def add_worker(commands: Commands) -> None:
    p = commands.client("worker", "run a worker on this machine")
    p.add_argument("--slots", type=int, metavar="N", help="jobs to run at once (default 1)")
    p.add_argument("--queue", action="append", metavar="NAME", help="queue to serve (repeatable; default 'default')")
    p.add_argument("--name", metavar="NAME", help="worker name (default: the host name)")
    p.add_argument(
        "--tag", action="append", metavar="KEY=VALUE", help="a label jobs may --require (repeatable; os, arch built in)"
    )
    p.add_argument("--cpus", type=int, metavar="N", help="cpus its jobs may ask for in all (default: max(slots, cpus))")
    p.add_argument("--memory", metavar="SIZE", help="memory its jobs may ask for in all, e.g. 16G (default: the RAM)")
    p.add_argument("--work-dir", metavar="DIR", help="where jobs' working directories are made")
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


def add_demo(commands: Commands) -> None:
    p = commands.add("demo", "run a broker and workers in this process on a temporary dir, and a batch of jobs")
    p.add_argument("--jobs", type=int, default=200, metavar="N")
    p.add_argument("--workers", type=int, default=2, metavar="N")
    p.add_argument("--slots", type=int, default=2, metavar="N")

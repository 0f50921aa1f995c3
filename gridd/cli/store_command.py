"""`gridd store migrate`: moves a stopped broker's SQLite grid into PostgreSQL (gridd/broker/store/pg_import.py
does it), then prints the row counts of both sides and what the new brokers need from the old data dir.

Trust is not moved: the CA's key and the cluster secret never go into the database (whoever can read it
could then pose as the broker), so the command copies no file and names the ones to carry, by hand, to each
new broker's data dir. Without them a new broker makes a CA of its own, and every credential handed out
(gridd1-<sha256 of the CA>-...) stops working (README "Security").
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gridd.broker.auth import TOKEN_FILE
from gridd.broker.tls import TLS_DIR
from gridd.config import Config, broker_data_dir
from gridd.protocol.errors import StorageFailed

if TYPE_CHECKING:
    from gridd.broker.store.pg_import import Imported

CA_FILES = ("ca.pem", "ca.key")  # the CA the credentials name; each broker issues its own certificate from it


def run_store(args: argparse.Namespace, config: Config) -> int:
    """Run `gridd store migrate` (its only action)."""
    try:
        # Imported here, not at start-up: psycopg is an optional dependency (`pip install 'gridd[postgresql]'`),
        # which a grid without PostgreSQL never installs.
        from gridd.broker.store.pg_import import import_data_dir
        from gridd.broker.store.pg_store import redact
    except ImportError as exc:
        raise StorageFailed(f"gridd store migrate needs psycopg ({exc}): pip install 'gridd[postgresql]'") from exc
    data_dir = Path(broker_data_dir(config.broker, os.environ))
    url: str = args.target
    print(f"gridd: copying {data_dir} into {redact(url)}", file=sys.stderr, flush=True)
    last = time.monotonic()

    def copied(table: str, rows: int) -> None:
        nonlocal last
        now = time.monotonic()
        print(f"gridd: {table}: {rows:,} row{'s' * (rows != 1)} ({now - last:.1f}s)", file=sys.stderr, flush=True)
        last = now

    done = import_data_dir(data_dir, url, copied)
    print(summary(done, redact(url)))
    print()
    print(what_to_carry(data_dir))
    return 0


def summary(done: Imported, target: str) -> str:
    """The counts of both sides, table by table, and what the copy did."""
    counts = [*done.counts.items(), ("total", tuple(sum(side) for side in zip(*done.counts.values(), strict=True)))]
    width = max(len(name) for name, _ in counts)
    lines = [f"{'table'.ljust(width)}  {'sqlite':>12}  {'postgresql':>12}"]
    lines += [f"{name.ljust(width)}  {a:>12,}  {b:>12,}" for name, (a, b) in counts]
    lines.append("")
    lines.append(
        f"Copied {done.source} into {target} in {done.seconds:.1f}s: {len(done.counts)} tables, "
        "the same rows on both sides, in one transaction."
    )
    if done.schema_found != done.schema_now:
        lines.append(
            f"Its schema was brought from {done.schema_found} to {done.schema_now} first, as a broker start would."
        )
    lines.append(
        f"Then meta's last_job_id was set to {done.last_job_id} (new jobs get ids above it) and the id sequences past "
        f"the ids copied. {done.source} is left as it was: a broker on its data dir now needs --store, or the grid "
        "splits in two."
    )
    return "\n".join(lines)


def what_to_carry(data_dir: Path) -> str:
    """Which files of the old data dir each new broker's data dir needs, before it first starts."""
    tls = data_dir / TLS_DIR
    ca = [tls / name for name in CA_FILES if (tls / name).is_file()]
    token = data_dir / TOKEN_FILE
    lines = [
        "The new brokers need this grid's CA and cluster secret, or every credential handed out stops working. "
        "Nothing secret was put in the database: before each new broker first starts, copy (as its user, mode 0600, "
        "by a private channel such as scp) into its data dir:"
    ]
    lines += [f"  {path}  ->  DATA_DIR/{TLS_DIR}/{path.name}" for path in ca]
    if len(ca) < len(CA_FILES):
        lines.append(f"  (no CA in {tls}: the credentials handed out name a CA this data dir does not hold)")
    if token.is_file():
        lines.append(f"  {token}  ->  DATA_DIR/{TOKEN_FILE}")
    else:
        lines.append(f"  (no {token}: give each new broker the GRIDD_TOKEN this one ran with)")
    lines.append("Then: gridd broker --data-dir DATA_DIR --store URL (or GRIDD_STORE=URL), on each machine.")
    return "\n".join(lines)

"""`gridd bundle push NAME DIR` and `gridd bundle list [NAME] [--json]`: their requests and output.
Their flags are in gridd/cli/args_admin.py."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gridd.cli import render
from gridd.client import bundles
from gridd.client.api import Client
from gridd.protocol.bundles import name_problem
from gridd.protocol.errors import ConfigError


async def run(client: Client, args: argparse.Namespace) -> int:
    """Run `gridd bundle ACTION`."""
    if args.bundle_action == "push":
        return await _push(client, args.name, Path(args.dir), args.follow_links)
    return await _list(client, args.name, args.json)


async def _push(client: Client, name: str, directory: Path, follow_links: bool) -> int:
    problem = name_problem(name)
    if problem is not None:
        raise ConfigError(problem)
    report = await bundles.push(client.connection, name, directory, follow_links=follow_links)
    print(f"{report.name}@{report.version}", flush=True)
    already = report.files - report.uploaded_files
    what = "new version" if report.created else "unchanged: the latest version already holds these files"
    print(
        f"gridd: {report.name}@{report.version} ({what}): {report.files} files, {report.bytes:,} bytes;"
        f" uploaded {report.uploaded_files} ({report.uploaded_bytes:,} bytes), {already} already there",
        file=sys.stderr,
    )
    return 0


async def _list(client: Client, name: str | None, as_json: bool) -> int:
    if name is not None and (problem := name_problem(name)) is not None:
        raise ConfigError(problem)
    views = await bundles.list_versions(client.connection, name)
    if as_json:
        print(render.to_json(views))
        return 0
    rows = [["NAME", "VERSION", "FILES", "BYTES", "PUSHED", "DIGEST"]]
    for v in views:
        pushed = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v.pushed_ms / 1000))
        rows.append([v.name, str(v.version), str(v.files), f"{v.bytes:,}", pushed, v.digest[:12]])
    print(render.table(rows))
    return 0

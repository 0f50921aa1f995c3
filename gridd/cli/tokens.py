"""`gridd token create|list|revoke`: credentials per role, made and managed with an admin credential.
Requests and output only: the flags are in args_admin.py; the broker decides (gridd/broker/authorization.py)."""

from __future__ import annotations

import argparse
import time

from gridd.cli import render
from gridd.client.api import Client
from gridd.protocol.messages import TokenView


async def run(client: Client, args: argparse.Namespace) -> int:
    """Run `gridd token ACTION`."""
    if args.token_action == "create":
        credential, _ = await client.create_token(
            args.name, args.role, queues=args.queues or (), expires_s=args.expires
        )
        print(credential, flush=True)
        return 0
    if args.token_action == "list":
        tokens = await client.tokens()
        print(render.to_json(tokens) if args.json else table(tokens))
        return 0
    token, closed = await client.revoke_token(args.name)
    print(f"revoked token {token.name!r} (role {token.role}); closed {closed} connection{'s' * (closed != 1)}")
    return 0


def table(tokens: list[TokenView]) -> str:
    if not tokens:
        return "no tokens (gridd token create makes one)"
    now = time.time() * 1000
    rows = [["NAME", "ROLE", "QUEUES", "CREATED", "LAST USED", "EXPIRES", "REVOKED"]]
    for t in tokens:
        expires = _when(t.expires_ms)
        if t.expires_ms is not None and t.expires_ms <= now:
            expires += " (expired)"
        rows.append(
            [
                t.name,
                t.role,
                ",".join(t.queues) or "any",
                _when(t.created_ms),
                _when(t.last_used_ms, "never"),
                expires,
                _when(t.revoked_ms),
            ]
        )
    return render.table(rows)


def _when(ms: int | None, none: str = "-") -> str:
    return none if ms is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))

"""The store's role tokens: credentials kept by the sha256 of their secret. Part of the store, run on its
database thread (a lookup also on the event loop's read connection: one row by a unique key).

Rules: no secret is ever stored or returned, only its hash, and no hash leaves this module but in a
lookup. A name is held by one token at a time; the name of a revoked or expired token may be given
to a new one (how a credential is rotated: revoke, then create under the same name), whose row then
replaces the old one.
"""

from __future__ import annotations

from collections.abc import Sequence

from gridd.broker.store.interface import TokenRow
from gridd.broker.store.sql import FOR_UPDATE, Tx
from gridd.protocol.errors import InvalidRequest
from gridd.protocol.messages import TokenView

_COLUMNS = "id, name, role, queues, created_ms, last_used_ms, expires_ms, revoked_ms"


def create_token(
    db: Tx,
    name: str,
    role: str,
    queues: Sequence[str],
    secret_sha256: str,
    now_ms: int,
    expires_ms: int | None,
) -> TokenView:
    old = db.execute(f"SELECT revoked_ms, expires_ms FROM tokens WHERE name = ?{FOR_UPDATE}", (name,)).fetchone()  # noqa: S608
    if old is not None:
        revoked, expires = old
        if revoked is None and (expires is None or expires > now_ms):
            raise InvalidRequest(f"a token named {name!r} exists and is in force: revoke it first (gridd token revoke)")
        db.execute("DELETE FROM tokens WHERE name = ?", (name,))
    insert = f"INSERT INTO tokens (name, role, queues, secret_sha256, created_ms, expires_ms) VALUES (?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}"  # noqa: S608, E501
    row = db.execute(insert, (name, role, ",".join(queues), secret_sha256, now_ms, expires_ms)).fetchone()
    return _row(row).view


def list_tokens(db: Tx) -> list[TokenView]:
    return [_row(r).view for r in db.execute(f"SELECT {_COLUMNS} FROM tokens ORDER BY name")]  # noqa: S608


def revoke_token(db: Tx, name: str, now_ms: int) -> TokenRow:
    """The token, revoked now (a token revoked already keeps its first revocation time)."""
    row = db.execute(
        f"UPDATE tokens SET revoked_ms = COALESCE(revoked_ms, ?) WHERE name = ? RETURNING {_COLUMNS}",  # noqa: S608
        (now_ms, name),
    ).fetchone()
    if row is None:
        raise InvalidRequest(f"no token is named {name!r} (gridd token list shows them)")
    return _row(row)


def find_token(db: Tx, secret_sha256: str) -> TokenRow | None:
    """The token whose secret hashes to `secret_sha256`, revoked or not; None if there is none."""
    row = db.execute(f"SELECT {_COLUMNS} FROM tokens WHERE secret_sha256 = ?", (secret_sha256,)).fetchone()  # noqa: S608
    return _row(row) if row is not None else None


def touch_tokens(db: Tx, used: Sequence[tuple[int, int]]) -> None:
    """Record when tokens were last used: (ms, token id) pairs. A time never goes back (another broker may
    have recorded a later use); rows are written in id order, as every broker does, so two never deadlock."""
    latest: dict[int, int] = {}
    for ms, token in used:
        latest[token] = max(ms, latest.get(token, ms))
    db.executemany(
        "UPDATE tokens SET last_used_ms = ? WHERE id = ? AND (last_used_ms IS NULL OR last_used_ms < ?)",
        [(ms, token, ms) for token, ms in sorted(latest.items())],
    )


def _row(r: Sequence[object]) -> TokenRow:
    queues = str(r[3])
    return TokenRow(
        id=int(r[0]),  # type: ignore[call-overload]
        view=TokenView(
            name=str(r[1]),
            role=str(r[2]),
            queues=queues.split(",") if queues else [],
            created_ms=r[4],  # type: ignore[arg-type]
            last_used_ms=r[5],  # type: ignore[arg-type]
            expires_ms=r[6],  # type: ignore[arg-type]
            revoked_ms=r[7],  # type: ignore[arg-type]
        ),
    )

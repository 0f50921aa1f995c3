"""What a client asks about the grid as a whole, and the replies: workers, status, the accounting report,
and the role tokens (role admin).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from gridd.protocol.base import Reply, Request
from gridd.protocol.fields import Count, EpochMs, Name, RoleName
from gridd.protocol.records import ReportRow, TokenView, WorkerView

REPORT_BY = ("owner", "queue", "worker")


class WorkersListed(Reply, frozen=True, tag="worker.listed"):
    workers: list[WorkerView]


class ListWorkers(Request[WorkersListed], frozen=True, tag="worker.list"):
    """Every worker the broker knows, connected or not."""


class StatusReported(Reply, frozen=True, tag="status.reported"):
    counts: dict[str, int]
    workers: int
    slots: int
    running: int


class GetStatus(Request[StatusReported], frozen=True, tag="status.get"):
    """Jobs per state, and the workers and slots connected."""


class ReportReady(Reply, frozen=True, tag="report.ready"):
    by: str
    since_ms: EpochMs
    rows: list[ReportRow]


class GetReport(Request[ReportReady], frozen=True, tag="report.get"):
    """Accounting of the attempts that ended at or after `since_ms`, one row per owner, queue or worker
    (`by`). A submit token gets its own jobs only."""

    since_ms: EpochMs = 0
    by: Annotated[str, msgspec.Meta(max_length=16)] = "owner"  # see REPORT_BY


class TokenCreated(Reply, frozen=True, tag="token.created"):
    """`credential`: the string to give the token's holder (GRIDD_TOKEN); shown this once, never again."""

    credential: str
    token: TokenView


class CreateToken(Request[TokenCreated], frozen=True, tag="token.create"):
    """Make a credential for `role`; `queues` limits it to those queues (submit: where it submits;
    worker: what it serves); `expires_s` after which it is refused (None: never)."""

    name: Name
    role: RoleName
    queues: Annotated[list[Name], msgspec.Meta(max_length=1024)] = msgspec.field(default_factory=list)
    expires_s: Annotated[float, msgspec.Meta(gt=0, le=2**40)] | None = None


class TokensListed(Reply, frozen=True, tag="token.listed"):
    tokens: list[TokenView]


class ListTokens(Request[TokensListed], frozen=True, tag="token.list"):
    """Every role token (never a secret)."""


class TokenRevoked(Reply, frozen=True, tag="token.revoked"):
    token: TokenView
    closed: Count = 0  # connections it had open, now closed


class RevokeToken(Request[TokenRevoked], frozen=True, tag="token.revoke"):
    """Refuse the token from now on and close its open connections."""

    name: Name

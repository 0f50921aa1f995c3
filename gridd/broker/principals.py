"""Who a connection speaks for: the credential it authenticated with, its role and its limits.

Every authenticated session holds one Principal. Its `name` is recorded as the owner of the jobs it
submits; its `role` decides which requests it may make (admin: everything; submit: submit, and see and
control its own jobs; worker: serve jobs leased to it; read: look, never at output, env or arguments).
The cluster token (GRIDD_TOKEN, or the broker's `token` file) is the admin credential named "admin".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["admin", "submit", "worker", "read"]
ROLES: tuple[Role, ...] = ("admin", "submit", "worker", "read")


@dataclass(frozen=True, slots=True)
class Principal:
    name: str  # the credential's name; a job's owner
    role: Role
    queues: tuple[str, ...] = ()  # the only queues it may use; () means any
    token_id: int | None = None  # its row in the store; None for the cluster token
    expires_ms: int | None = None  # when it stops being accepted; None: never


CLUSTER_ADMIN = Principal(name="admin", role="admin")

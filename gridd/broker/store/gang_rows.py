"""What the store and the dispatcher pass each other about gang jobs (submit --gang N): a queued gang, the
seats the dispatcher found for one, and the spec each member runs (store/gangs.py, broker/gangs.py).

Rule: a member's spec is its gang's with three variables added, the same for every backend: its size, its
rank (0 .. N-1, in the order of the seats) and the hosts of all members by rank, comma-separated
(GRIDD_GANG_WORKERS names their workers the same way: hosts repeat when workers share a machine).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from gridd.broker.matching import Lane
from gridd.protocol.messages import JobSpec


@dataclass(frozen=True, slots=True)
class QueuedGang:
    """A queued gang job, as the dispatcher needs it: what each member asks of its worker and since when
    the gang may run (`ready_ms`: the latest of its submit, its start time and its retry delay)."""

    job_id: str
    lane: Lane
    size: int
    cpus: int
    memory_mb: int
    ready_ms: int
    not_before_ms: int


@dataclass(frozen=True, slots=True)
class GangSeat:
    """A waiting worker given one member: the seats of a grant in rank order."""

    worker: str
    instance: str
    host: str


@dataclass(frozen=True, slots=True)
class GangGrant:
    """A gang the dispatcher found seats for, one per member on distinct workers."""

    job_id: str
    seats: Sequence[GangSeat]


def member_spec(spec: JobSpec, rank: int, seats: Sequence[GangSeat]) -> JobSpec:
    """The spec member `rank` of a gang seated on `seats` runs."""
    env = {
        **spec.env,
        "GRIDD_GANG_SIZE": str(len(seats)),
        "GRIDD_GANG_RANK": str(rank),
        "GRIDD_GANG_HOSTS": ",".join(s.host for s in seats),
        "GRIDD_GANG_WORKERS": ",".join(s.worker for s in seats),
    }
    return msgspec.structs.replace(spec, env=env)

"""What the store's use cases take and return beyond the protocol's records (interface.py names them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gridd.broker.matching import Budget, Lane
from gridd.broker.transitions import Transition
from gridd.protocol.messages import AttemptView, DependencyView, JobView, LeaseRef, TokenView


@dataclass(frozen=True, slots=True)
class Announced:
    """What a use case changed, as other brokers sharing the store hear of it (changes.py): the jobs'
    transitions (with the ledger's event kind; None: the one each state implies), and the role tokens it
    revoked (id, name), whose open connections every broker closes."""

    kind: str | None
    changed: list[Transition]
    revoked: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Ask:
    """One worker's lease request, as the dispatcher hands it to the store: up to `max_jobs` jobs of
    `lanes` that fit `budget` together, leased to `worker` (its `instance`)."""

    worker: str
    lanes: Sequence[Lane]
    max_jobs: int
    budget: Budget = field(default_factory=Budget)
    instance: str = ""


@dataclass(frozen=True, slots=True)
class Revoked:
    """A running job's lease that a control action invalidated; its worker must stop it."""

    worker: str
    lease: LeaseRef


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A role token and the key its uses are recorded under (never its secret, nor its hash)."""

    id: int
    view: TokenView


@dataclass(frozen=True, slots=True)
class JobFacts:
    """One job with what keeps it waiting that only the store knows (`gridd why`)."""

    job: JobView
    attempts: list[AttemptView]
    not_before_ms: int  # 0: no retry delay
    throttled: bool  # queued, but its group is at --max-running
    dependencies: list[DependencyView] = field(default_factory=list)
    max_running: int | None = None  # of its group
    group_running: list[str] = field(default_factory=list)  # the first few running jobs of its group
    group_running_count: int = 0
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # running job id -> (cpus, memory_mb)


@dataclass(frozen=True, slots=True)
class SubmitKey:
    """An idempotent submit's key (gridd/broker/submit_keys.py): its name, which request of the submit
    this is (`part`: chunks count from 0), the digest of that request, and how long it is kept."""

    name: str
    digest: str
    ttl_ms: int
    part: int = 0


@dataclass(frozen=True, slots=True)
class KeyedSubmit:
    """What a submit with a key did: made jobs (`changed`), or found the key and made none (`replayed`,
    the ids and group those of the submit that first used it)."""

    job_ids: list[str]
    group: str | None
    replayed: bool
    changed: list[Transition] = field(default_factory=list)

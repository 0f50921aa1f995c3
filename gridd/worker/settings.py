"""AgentSettings: what a worker agent is told at start (built by gridd.worker.app)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AgentSettings:
    broker: str
    token: str
    name: str
    host: str
    slots: int
    queues: list[str]
    tags: dict[str, str]
    grace_s: float
    cpus: int | None = None  # None: as many as slots
    memory_mb: int | None = None  # None: no limit
    instance: str = ""  # kept in the work dir (gridd.worker.workdir): proves a reconnection is this worker
    insecure: bool = False  # plain TCP to the broker (--insecure)

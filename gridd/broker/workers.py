"""The workers connected now: their announced capacity and the way to push a frame to each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gridd.protocol.errors import WorkerNameInUse
from gridd.protocol.messages import Message, WorkerView

# The states only a worker with a host-idle policy reports (messages.WORKER_STATES); one without is
# "available" or "draining".
LENDING_STATES = frozenset({"idle", "owner-busy", "outside-window", "suspended"})


@dataclass(slots=True)
class WorkerLink:
    """One connected worker. Mutable, owned by the registry; `push` never blocks."""

    name: str
    host: str
    slots: int
    queues: list[str]
    tags: dict[str, str]
    connected_ms: int
    last_seen_ms: int
    push: Callable[[Message], None] = field(repr=False)
    jobs: set[str] = field(default_factory=set)  # ids of the jobs it runs now
    tasks: list[str] = field(default_factory=list)  # the task modules it serves
    state: str = "available"  # as the worker last reported it (messages.WORKER_STATES)
    cpus: int | None = None  # what it has in all; None: no limit announced (an older worker)
    memory_mb: int | None = None
    instance: str = ""  # the worker's instance id (RegisterWorker.instance); its leases are bound to it
    credential_queues: tuple[str, ...] = ()  # the only queues its worker credential may serve; () any
    # It lends a desktop (--when-idle, --window, --idle-probe): it has reported a state only such a worker
    # reports. Once seen it stays so for the connection: a lending worker that drains is still one.
    lends: bool = False

    def __post_init__(self) -> None:
        self.observe(self.state)

    def observe(self, state: str) -> None:
        """The worker reported `state`."""
        self.state = state
        self.lends = self.lends or state in LENDING_STATES


class WorkerRegistry:
    """Worker name -> link. A name is held by one live connection at a time."""

    def __init__(self) -> None:
        self._links: dict[str, WorkerLink] = {}

    def add(self, link: WorkerLink) -> None:
        if link.name in self._links:
            raise WorkerNameInUse(f"a worker named {link.name!r} is already connected; give this one --name")
        self._links[link.name] = link

    def remove(self, link: WorkerLink) -> None:
        if self._links.get(link.name) is link:
            del self._links[link.name]

    def get(self, name: str) -> WorkerLink | None:
        return self._links.get(name)

    def all(self) -> list[WorkerLink]:
        return sorted(self._links.values(), key=lambda w: w.name)

    def views(self) -> list[WorkerView]:
        """Each connected worker as clients see it (`gridd workers`, a subscription's snapshot)."""
        return [
            WorkerView(
                name=w.name,
                host=w.host,
                slots=w.slots,
                running=len(w.jobs),
                jobs=sorted(w.jobs, key=_id_order),
                queues=w.queues,
                tags=w.tags,
                connected=True,
                connected_ms=w.connected_ms,
                last_seen_ms=w.last_seen_ms,
                tasks=w.tasks,
                state=w.state,
                cpus=w.cpus,
                memory_mb=w.memory_mb,
            )
            for w in self.all()
        ]


def _id_order(job_id: str) -> tuple[int, str]:
    """Job ids (decimal numbers) in numeric order, without parsing them."""
    return (len(job_id), job_id)

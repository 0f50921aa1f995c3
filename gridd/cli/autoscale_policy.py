"""What `gridd autoscale` decides, from one look at the grid: start N workers, stop these, or nothing.

Pure: no I/O and no clock of its own (the caller passes `now_ms` in each Snapshot), so the rules are tested
with plain values. What it must remember between looks (since when each worker runs nothing, the workers
asked for that have not connected yet, the ones asked to stop) is a `Memory` it is given and returns.

The rules (README "Workers on demand"):
- A queued job is *unserved* when no connected worker that takes jobs and serves its queue has a free slot
  (slots - running). This approximates "no connected worker can take it": a job whose tags, cpus or memory no
  worker has, while slots are free, does not start workers.
- Up: when an unserved job has been queued longer than `after_s`, and no up was asked within `after_s` (the
  cooldown), ask for ceil(unserved jobs / slots of the worker last seen) workers, less those asked for and
  still coming, at least 1, never past `max_workers` (connected + coming). Below `min_workers`: ask for the
  missing ones at once.
- Down: workers that take jobs and have run nothing for `idle_s` (seen by this autoscaler), beyond
  `min_workers`, longest idle first; none while a worker is coming or a job is unserved, and not a worker
  with a job of its queues queued for less than `idle_s` (it is about to take it).
- Workers asked for count as coming until that many new names connect or for `warmup_s`; a worker asked
  to stop is not asked again until `warmup_s` has passed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

# The worker states (protocol/fields.py WORKER_STATES) in which a worker takes jobs.
TAKING_STATES = frozenset({"available", "idle"})


@dataclass(frozen=True)
class Settings:
    min_workers: int = 0
    max_workers: int = 10
    after_s: float = 30.0
    idle_s: float = 300.0
    queue: str | None = None  # None: every queue and every worker
    warmup_s: float = 300.0


@dataclass(frozen=True)
class Worker:
    name: str
    slots: int
    running: int
    queues: tuple[str, ...]
    state: str = "available"
    connected_ms: int = 0

    @property
    def taking(self) -> bool:
        return self.state in TAKING_STATES


@dataclass(frozen=True)
class QueuedJob:
    queue: str
    since_ms: int  # queued since (its submission, or its start time for a delayed job)


@dataclass(frozen=True)
class Snapshot:
    now_ms: int
    workers: tuple[Worker, ...]
    queued: tuple[QueuedJob, ...]


@dataclass(frozen=True)
class Memory:
    """What the autoscaler knows from its earlier looks."""

    idle_since_ms: Mapping[str, int] = field(default_factory=dict)  # worker -> since when it ran nothing
    coming: tuple[tuple[int, int], ...] = ()  # (asked at ms, workers still to connect), oldest first
    stopping: Mapping[str, int] = field(default_factory=dict)  # worker -> when it was asked to stop
    seen: frozenset[str] = frozenset()  # the workers of the last look
    last_up_ms: int | None = None
    slots: int = 1  # the slots of the worker last seen connecting (a new one likely has as many)

    @property
    def coming_count(self) -> int:
        return sum(n for _, n in self.coming)


@dataclass(frozen=True)
class Decision:
    start: int  # workers to ask the up command for (0: none)
    stop: tuple[str, ...]  # workers to hand to the down command
    reason: str  # for the log and the person: why (empty when nothing is done)
    memory: Memory


def decide(snapshot: Snapshot, settings: Settings, memory: Memory) -> Decision:
    """One look: the action to take now, and what to remember for the next."""
    now = snapshot.now_ms
    in_scope = [w for w in snapshot.workers if settings.queue is None or settings.queue in w.queues]
    memory = _remembered(memory, in_scope, now, settings)
    live = [w for w in in_scope if w.name not in memory.stopping and w.state != "draining"]
    coming = memory.coming_count

    unserved = _unserved(snapshot, settings)
    short = settings.min_workers - len(live) - coming
    if short > 0 and len(live) + coming < settings.max_workers:
        count = min(short, settings.max_workers - len(live) - coming)
        return _up(count, f"{len(live)} workers, fewer than --min {settings.min_workers}", now, memory)
    waited_ms = max((now - j.since_ms for j in unserved), default=-1)
    cooled = memory.last_up_ms is None or now - memory.last_up_ms >= settings.after_s * 1000
    if unserved and waited_ms >= settings.after_s * 1000 and cooled:
        room = settings.max_workers - len(live) - coming
        wanted = math.ceil(len(unserved) / max(1, memory.slots)) - coming  # at least 1: len(unserved) > 0
        count = min(room, wanted)
        if count > 0:
            jobs = f"{len(unserved)} queued job" + ("s" if len(unserved) > 1 else "")
            reason = f"{jobs} no connected worker can take, the oldest for {waited_ms / 1000:.0f}s"
            return _up(count, reason, now, memory)
    if coming or unserved:
        return Decision(0, (), "", memory)
    idle = sorted(
        (w for w in live if w.taking and w.running == 0 and w.name in memory.idle_since_ms),
        key=lambda w: (memory.idle_since_ms[w.name], w.name),
    )
    # A job queued lately in a worker's queue is about to be its own: the worker is kept. One queued for
    # longer than --idle while the worker stayed idle is one it cannot take (tags, cpus, memory).
    recent = {j.queue for j in snapshot.queued if now - j.since_ms < settings.idle_s * 1000}
    idle = [
        w
        for w in idle
        if now - memory.idle_since_ms[w.name] >= settings.idle_s * 1000 and not recent.intersection(w.queues)
    ]
    stop = tuple(w.name for w in idle[: max(0, len(live) - settings.min_workers)])
    if not stop:
        return Decision(0, (), "", memory)
    stopping = {**memory.stopping, **dict.fromkeys(stop, now)}
    memory = replace(memory, stopping=stopping)
    return Decision(0, stop, f"idle for {settings.idle_s:g}s or more, beyond --min {settings.min_workers}", memory)


def _up(count: int, reason: str, now: int, memory: Memory) -> Decision:
    return Decision(count, (), reason, replace(memory, coming=(*memory.coming, (now, count)), last_up_ms=now))


def _unserved(snapshot: Snapshot, settings: Settings) -> list[QueuedJob]:
    """The queued jobs (of --queue) whose queue has no free slot on a connected worker that takes jobs."""
    free: dict[str, int] = {}
    for w in snapshot.workers:
        if w.taking:
            for q in w.queues:
                free[q] = free.get(q, 0) + max(0, w.slots - w.running)
    jobs = (j for j in snapshot.queued if settings.queue is None or j.queue == settings.queue)
    return [j for j in jobs if free.get(j.queue, 0) == 0]


def _remembered(memory: Memory, workers: list[Worker], now: int, settings: Settings) -> Memory:
    """The memory brought up to this look: idle clocks, arrivals of the workers asked for, departures."""
    names = frozenset(w.name for w in workers)
    idle = {w.name: memory.idle_since_ms.get(w.name, now) for w in workers if w.running == 0}
    warm_ms = settings.warmup_s * 1000
    arrived = len(names - memory.seen)
    coming: list[tuple[int, int]] = []
    for asked_ms, n in memory.coming:  # the oldest request is met first
        met = min(n, arrived)
        arrived -= met
        if n - met > 0 and now - asked_ms < warm_ms:
            coming.append((asked_ms, n - met))
    stopping = {n: t for n, t in memory.stopping.items() if n in names and now - t < warm_ms}
    newest = max(workers, key=lambda w: w.connected_ms, default=None)
    slots = newest.slots if newest is not None else memory.slots
    return replace(memory, idle_since_ms=idle, coming=tuple(coming), stopping=stopping, seen=names, slots=max(1, slots))

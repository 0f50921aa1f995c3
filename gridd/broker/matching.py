"""Which worker may run which job: lanes, free budgets, and why a job no connected worker can run waits.

Rules:
- A job's lane is the part of its spec that decides which workers may ever lease it, as one string: ''
  (a command) or 'task:MODULE', then ';KEY=VALUE' for each requirement, sorted by key. Leasing reads
  one index range per (queue, lane), so tags cost no scan: a worker's lanes are the known (queue, lane)
  pairs whose module it serves ('' or one of its --tasks) and whose every requirement is one of its tags.
- The broker knows every (queue, lane) that may hold a job to lease (the store's `lanes` table, loaded at
  start, added to at each submit and retry, and pruned of the queues that have no job left to lease); a
  lane appearing while a worker long-polls reaches it at the next dispatch pass, because the dispatcher
  asks `LaneBook.for_worker` at each pass rather than once per request. What a pass costs grows with the
  asking worker's queues and their lanes, never with the number of queues ever seen; and the lanes of a
  queue with no queued job are not read at all (Broker.lease).
- cpus and memory are counted, not matched: a Budget says what each job of one lease may ask for (the
  worker's size, and its free budget) and what all of them together may ask for (its free budget).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gridd.broker.workers import WorkerLink
from gridd.protocol.messages import JobSpec, JobView
from gridd.protocol.states import JobState

Lane = tuple[str, str]  # (queue, lane)
UNLIMITED = 2**62  # what None (no limit) means in a comparison or an SQL parameter


def lane_key(module: str | None, requires: Mapping[str, str]) -> str:
    """The lane of a job of task module `module` (None: a command) with these requirements."""
    base = f"task:{module}" if module is not None else ""
    return base + "".join(f";{k}={requires[k]}" for k in sorted(requires))


def lane_of_spec(spec: JobSpec) -> str:
    if spec.task is None and not spec.requires:
        return ""  # a command that requires nothing: most jobs, read twice per submit
    return lane_key(spec.task.name.partition(":")[0] if spec.task is not None else None, spec.requires)


def parse_lane(lane: str) -> tuple[str | None, dict[str, str]]:
    """(task module or None, requirements) of a lane string made by lane_key."""
    base, *parts = lane.split(";")
    module = base.removeprefix("task:") if base.startswith("task:") else None
    return module, dict(p.partition("=")[::2] for p in parts)


def may_lease(link: WorkerLink, lane: Lane) -> bool:
    """Whether `link` may run the jobs of `lane`: it serves the queue and the module, and has every tag."""
    queue, key = lane
    if queue not in link.queues:
        return False
    module, requires = parse_lane(key)
    if module is not None and module not in link.tasks:
        return False
    return all(link.tags.get(k) == v for k, v in requires.items())


class LaneBook:
    """The known (queue, lane) pairs by queue, and each connected worker's share of them: the lanes of the
    queues it serves, so its cost is its own queues' lanes, never every queue ever seen. A worker's share
    is cached until a lane of one of its queues comes or goes, or its link is replaced by a reconnection.
    Lanes are dropped with their queue once no job of it can be leased any more (Broker.drop_idle_lanes)."""

    def __init__(self) -> None:
        self._by_queue: dict[str, set[str]] = {}
        self._versions: dict[str, int] = {}  # queue -> when its lanes last changed
        self._clock = 0
        self._cache: dict[str, tuple[WorkerLink, tuple[int, ...], list[Lane]]] = {}
        self.scanned = 0  # lanes looked at by the last for_worker that had to look (tests assert on it)

    def add(self, lanes: Iterable[Lane]) -> None:
        for queue, lane in lanes:
            known = self._by_queue.setdefault(queue, set())
            if lane not in known:
                known.add(lane)
                self._changed(queue)

    def drop(self, queues: Iterable[str]) -> None:
        for queue in queues:
            if self._by_queue.pop(queue, None) is not None:
                self._changed(queue)
                del self._versions[queue]  # a queue that comes back starts a new version: the clock moved on

    def queues(self) -> list[str]:
        return list(self._by_queue)

    def __len__(self) -> int:
        return sum(len(lanes) for lanes in self._by_queue.values())

    def for_worker(self, link: WorkerLink) -> list[Lane]:
        versions = tuple(self._versions.get(q, 0) for q in link.queues)
        cached = self._cache.get(link.name)
        if cached is not None and cached[0] is link and cached[1] == versions:
            return cached[2]
        # The plain command lanes always, known or not: an idle grid's first job needs no lane table.
        mine = [(q, lane) for q in link.queues for lane in self._by_queue.get(q, ())]
        self.scanned = len(mine)
        lanes = list(dict.fromkeys([(q, "") for q in link.queues] + sorted(x for x in mine if may_lease(link, x))))
        self._cache[link.name] = (link, versions, lanes)
        return lanes

    def forget(self, link: WorkerLink) -> None:
        cached = self._cache.get(link.name)
        if cached is not None and cached[0] is link:
            del self._cache[link.name]

    def _changed(self, queue: str) -> None:
        self._clock += 1
        self._versions[queue] = self._clock


@dataclass(frozen=True, slots=True)
class Budget:
    """What one lease request may take. Each job asks for at most `job_cpus` and `job_memory_mb` (the
    smaller of the worker's size and its free budget); all of them together for at most `cpus` and
    `memory_mb`. None: no limit (an older worker that announced none)."""

    cpus: int | None = None
    memory_mb: int | None = None
    job_cpus: int | None = None
    job_memory_mb: int | None = None

    @staticmethod
    def of(link: WorkerLink, cpus: int | None, memory_mb: int | None) -> Budget:
        return Budget(cpus, memory_mb, _least(cpus, link.cpus), _least(memory_mb, link.memory_mb))

    def covers(self, other: Budget) -> bool:
        """Every job `other` could lease one at a time, this one could too (same or larger per-job limits)."""
        return _ge(self.job_cpus, other.job_cpus) and _ge(self.job_memory_mb, other.job_memory_mb)

    def take(self, specs: Iterable[tuple[int, int]]) -> list[bool]:
        """Greedy, in the order given: which of these (cpus, memory_mb) asks fit together."""
        cpus = UNLIMITED if self.cpus is None else self.cpus
        memory = UNLIMITED if self.memory_mb is None else self.memory_mb
        taken = []
        for c, m in specs:
            fits = c <= cpus and m <= memory
            if fits:
                cpus, memory = cpus - c, memory - m
            taken.append(fits)
        return taken

    def left_after(self, specs: Sequence[JobSpec]) -> Budget:
        used_c, used_m = sum(s.cpus for s in specs), sum(s.memory_mb for s in specs)
        return Budget(
            None if self.cpus is None else self.cpus - used_c,
            None if self.memory_mb is None else self.memory_mb - used_m,
            self.job_cpus,
            self.job_memory_mb,
        )

    def room_for_any(self) -> bool:
        """Whether any job within the per-job limits still fits the total (so nothing was skipped for it)."""
        return _ge(self.cpus, self.job_cpus) and _ge(self.memory_mb, self.job_memory_mb)


class DrainedLanes:
    """Lanes that gave all they had to a request, with the budgets it asked under: a later request whose
    per-job limits are no larger would find nothing there either, and need not read them."""

    def __init__(self) -> None:
        self._budgets: dict[Lane, list[Budget]] = {}

    def __bool__(self) -> bool:
        return bool(self._budgets)

    def open(self, lanes: Sequence[Lane], budget: Budget) -> list[Lane]:
        """Those of `lanes` a request under `budget` may still find a job in."""
        return [x for x in lanes if not any(b.covers(budget) for b in self._budgets.get(x, ()))]

    def note(self, lanes: Sequence[Lane], budget: Budget, max_jobs: int, leased: Sequence[JobSpec]) -> None:
        """A request under `budget` for `max_jobs` read `lanes` and leased `leased`. Fewer jobs than asked
        is "drained" only if the total budget did not stop the greedy pick, i.e. any job within the per-job
        limits would still have fitted what was left."""
        if len(leased) < max_jobs and budget.left_after(leased).room_for_any():
            for lane in lanes:
                self._budgets.setdefault(lane, []).append(budget)


def _least(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _ge(a: int | None, b: int | None) -> bool:
    return a is None or (b is not None and a >= b)


# ---- why a job waits -------------------------------------------------------------------------------------------


def unmatched(job: JobView, workers: Sequence[WorkerLink]) -> str | None:
    """For a queued job: why no connected worker could ever run it (the closest reason), or None if one could."""
    if job.state != JobState.QUEUED:
        return None
    module = _module(job)
    where = f"queue {job.queue!r}"
    serving = [w for w in workers if job.queue in w.queues]
    if not serving:
        return _say("no worker serves " + where if workers else "no worker is connected")
    if module is not None:
        serving = [w for w in serving if module in w.tasks]
        if not serving:
            return _say(f"no worker serving {where} runs the tasks of module {module!r} (gridd worker --tasks)")
        where += f" and module {module!r}"
    tagged = [w for w in serving if not _missing_tags(job, w)]
    if not tagged:
        missing = [f"{k}={v}" for k, v in sorted(job.requires.items()) if all(w.tags.get(k) != v for w in serving)]
        wanted = missing[:1] or [f"{k}={v}" for k, v in sorted(job.requires.items())]
        return _say(f"no worker serving {where} has the tag{'s' if len(wanted) > 1 else ''} {', '.join(wanted)}")
    where += " with its tags" if job.requires else ""
    cpus_ok = [w for w in tagged if _ge(w.cpus, job.cpus)]
    if not cpus_ok:
        most = max(w.cpus or 0 for w in tagged)
        return _say(f"it asks for {job.cpus} cpus, the most any worker serving {where} has is {most}")
    memory_ok = [w for w in cpus_ok if _ge(w.memory_mb, job.memory_mb)]
    if not memory_ok:
        most = max(w.memory_mb or 0 for w in cpus_ok)
        enough = " with enough cpus" if len(cpus_ok) < len(tagged) else ""
        return _say(
            f"it asks for {job.memory_mb} MiB of memory, the most any worker serving {where}{enough} has is {most} MiB"
        )
    return None


# What keeps one worker from taking a job, in the order `blocker` checks them. The first five never change
# while the worker stays connected (it could never run the job); the rest pass (a slot frees, the owner leaves).
NEVER = ("credential", "queue", "module", "tag", "cpus", "memory")
TAKEN_BACK = {
    "owner-busy": "its owner is using the machine (owner-busy)",
    "outside-window": "outside its lending window",
    "suspended": "suspended: its owner came back while it ran jobs",
    "draining": "draining: it is shutting down",
}


def blocker(job: JobView, link: WorkerLink, sizes: Mapping[str, tuple[int, int]]) -> tuple[str, str] | None:
    """The first thing that keeps `link` from taking `job` now, as (kind, one line), or None if nothing
    does. `sizes`: the cpus and MiB of the jobs it runs, to tell its free budget (one missing: not counted)."""
    if job.queue not in link.queues:
        allowed = link.credential_queues
        if allowed and job.queue not in allowed:
            return "credential", f"its credential serves only {', '.join(repr(q) for q in allowed)}"
        return "queue", f"it does not serve queue {job.queue!r}"
    module = _module(job)
    if module is not None and module not in link.tasks:
        return "module", f"it does not run the tasks of module {module!r} (gridd worker --tasks)"
    missing = _missing_tags(job, link)
    if missing:
        key, want = missing[0]
        has = link.tags.get(key)
        return "tag", f"it lacks the tag {key}={want}" + (f" (it has {key}={has})" if has is not None else "")
    if not _ge(link.cpus, job.cpus):
        return "cpus", f"it has {link.cpus} cpus, the job asks for {job.cpus}"
    if not _ge(link.memory_mb, job.memory_mb):
        return "memory", f"it has {link.memory_mb} MiB of memory, the job asks for {job.memory_mb} MiB"
    if link.state in TAKEN_BACK:
        return link.state, TAKEN_BACK[link.state]
    running = sorted(link.jobs, key=lambda j: (len(j), j))
    if len(running) >= link.slots:
        return (
            "slots",
            f"all {link.slots} of its slots are busy: job{'s' if len(running) > 1 else ''} {', '.join(running)}",
        )
    used_cpus = sum(sizes.get(j, (0, 0))[0] for j in running)
    used_memory = sum(sizes.get(j, (0, 0))[1] for j in running)
    if link.cpus is not None and link.cpus - used_cpus < job.cpus:
        return "busy-cpus", f"{link.cpus - used_cpus} of its {link.cpus} cpus are free (jobs {', '.join(running)})"
    if link.memory_mb is not None and link.memory_mb - used_memory < job.memory_mb:
        free = link.memory_mb - used_memory
        return "busy-memory", f"{free} of its {link.memory_mb} MiB are free (jobs {', '.join(running)})"
    return None


def _module(job: JobView) -> str | None:
    return job.task.partition(":")[0] if job.task else None


def _missing_tags(job: JobView, link: WorkerLink) -> list[tuple[str, str]]:
    return [(k, v) for k, v in sorted(job.requires.items()) if link.tags.get(k) != v]


def _say(why: str) -> str:
    return f"no connected worker can run it: {why}"

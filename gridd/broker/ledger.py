"""The broker's memory of what committed: jobs per queue and state, and who must hear of each change.

Rule: `record` is called only with transitions whose store call has returned (committed), so a reply, an
event or a wake-up never runs ahead of the database, and it is called before that caller awaits anything
else. The counts are read from the store once at start and from then on kept here alone, so a snapshot and
the events after it agree exactly. With other brokers on the same store (PostgreSQL), their committed
changes arrive through `from_peer` and count the same; the counts are read afresh whenever some of theirs
may have been missed (`recount`).

Why a recount is exact for this broker's own changes: the read is a store call like the others, and the
group commit runs calls in order and wakes their callers in commit order (commit.py, pg_commit.py). So when
the read returns, every own change it saw has been recorded already, and every one it did not see is
recorded after: taking its counts as they are is right for both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import structlog

from gridd.broker.events import EventHub
from gridd.broker.finishes import FinishWatch
from gridd.broker.observe import Observer
from gridd.broker.promoter import Promoter
from gridd.broker.scheduler import Dispatcher
from gridd.broker.store.changes import PURGED
from gridd.broker.store.interface import Announced
from gridd.broker.transitions import Transition
from gridd.broker.workers import WorkerRegistry
from gridd.clock import Clock
from gridd.protocol.messages import Event, LeasedJob, WorkerView
from gridd.protocol.states import FINISHED, JOB_STATES, JobState

log = structlog.get_logger()

# The event a transition is published as, by the state it reached (unless its use case names one).
KIND_BY_STATE: dict[str, str] = {
    JobState.QUEUED: "job.requeued",
    JobState.RUNNING: "job.started",
    JobState.SUCCEEDED: "job.succeeded",
    JobState.FAILED: "job.failed",
    JobState.CANCELLED: "job.cancelled",
    JobState.HELD: "job.held",
    JobState.SCHEDULED: "job.scheduled",
}
_ENDED_AS: dict[str, str] = {JobState.QUEUED: "requeued"}  # an attempt that ended with its job queued again


class Ledger:
    """Counts, log lines, events, finish waiters and the dispatcher's (and promoter's) wake-up, for each
    committed change."""

    def __init__(
        self,
        counts: dict[str, dict[str, int]],
        hub: EventHub,
        watch: FinishWatch,
        workers: WorkerRegistry,
        dispatcher: Dispatcher,
        clock: Clock,
        observer: Observer,
        promoter: Promoter | None = None,
    ) -> None:
        self.counts = counts  # queue -> state -> jobs
        self._hub = hub
        self._watch = watch
        self._workers = workers
        self._dispatcher = dispatcher
        self._clock = clock
        self._observer = observer
        self._promoter = promoter
        # Since start, for metrics (read at scrape time, gridd/broker/metrics.py): attempts ended by what
        # became of their job (succeeded, failed, requeued, cancelled).
        self.attempts_ended: Counter[str] = Counter()

    def record(self, changed: Sequence[Transition], kind: str | None = None, *, log_each: bool = True) -> None:
        """Count, log, publish, wake the waiters and the dispatcher for transitions that just committed."""
        if not changed:
            return
        now = self._clock.now_ms()
        events: list[Event] = []
        ran_ms: list[int] = []
        lines: dict[tuple[str, str, int, str | None, int | None, str | None], list[str]] = {}
        publishing = self._hub.active  # nobody listening: building events is wasted work
        for t in changed:
            by_state = self.counts.setdefault(t.queue, {})
            if t.previous is not None:
                by_state[t.previous] = by_state.get(t.previous, 0) - 1
                if t.previous == JobState.RUNNING:  # an attempt ended: its result, an expiry, a hand-back, a cancel
                    self.attempts_ended[_ENDED_AS.get(t.state, t.state)] += 1
                    if t.ran_ms is not None:
                        ran_ms.append(t.ran_ms)
            by_state[t.state] = by_state.get(t.state, 0) + 1
            name = kind or KIND_BY_STATE.get(t.state, "job.changed")
            if log_each:
                lines.setdefault((name, t.state, t.attempt, t.worker, t.exit_code, t.reason), []).append(t.job_id)
            if publishing:
                events.append(
                    Event(
                        kind=name,
                        ts_ms=now,
                        job_id=t.job_id,
                        worker=t.worker,
                        queue=t.queue,
                        state=t.state,
                        attempt=t.attempt,
                        exit_code=t.exit_code,
                        message=t.reason,
                        previous=t.previous,
                    )
                )
            if t.worker is not None:
                events.extend(self._track_worker(t, now))
        _log_lines(lines)
        self._hub.publish(events)
        if ran_ms:
            self._observer.attempts_ended(ran_ms)
        self._watch.finished(t.job_id for t in changed if t.state in FINISHED)
        # Not only a queued job can make work eligible: a finished or held one may free a --max-running
        # token, a finished one a dependency. Only a lease cannot.
        self._dispatcher.wake(eligible=any(t.state != JobState.RUNNING for t in changed))
        if self._promoter is not None and any(t.state == JobState.SCHEDULED for t in changed):
            self._promoter.wake()  # its start time may come before the one the promoter sleeps until

    def from_peer(self, announced: Announced) -> None:
        """What another broker on the same store committed: counted, published and waking waiters here too
        (its log lines are that broker's)."""
        if announced.kind == PURGED:
            self.forget([(t.job_id, t.queue, t.previous or "") for t in announced.changed])
        else:
            self.record(announced.changed, announced.kind, log_each=False)

    def recount(self, counts: dict[str, dict[str, int]]) -> None:
        """Take the store's counts, just read, as they are (the module's docstring says why that is exact
        for this broker's own changes). Another broker's change committed after the listener's LISTEN and
        before this read is in these counts and is then delivered too: counted twice, over, never under (a
        queue that looks empty would not be offered to its workers: worker_desk)."""
        self.counts.clear()
        self.counts.update({queue: dict(by_state) for queue, by_state in counts.items()})

    def leased(self, worker: str, jobs: Sequence[LeasedJob]) -> None:
        """The dispatcher's leases, once committed: each job went from queued to running on `worker`."""
        self.record(
            [
                Transition(j.job_id, JobState.RUNNING, j.spec.queue, j.attempt, worker, previous=JobState.QUEUED)
                for j in jobs
            ]
        )

    def forget(self, removed: Sequence[tuple[str, str, str]]) -> None:
        """Count out purged jobs (id, queue, state), and tell subscribers (`job.purged` says the state it left)."""
        now = self._clock.now_ms()
        events = []
        for job_id, queue, state in removed:
            by_state = self.counts.get(queue, {})
            by_state[state] = by_state.get(state, 0) - 1
            if not any(by_state.values()):
                self.counts.pop(queue, None)
            if self._hub.active:
                events.append(Event(kind="job.purged", ts_ms=now, job_id=job_id, queue=queue, previous=state))
        self._hub.publish(events)

    def queued(self, queue: str) -> int:
        """Jobs queued in `queue` now (exact: kept by record)."""
        return self.counts.get(queue, {}).get(JobState.QUEUED, 0)

    def idle_queues(self, queues: Sequence[str]) -> list[str]:
        """Those of `queues` with no job that could be leased now or later (none waiting, queued, held or running)."""
        counts = self.counts
        return [q for q in queues if not any(n for s, n in counts.get(q, {}).items() if s not in FINISHED)]

    def status(self) -> tuple[dict[str, int], int, int]:
        """Jobs by state, connected workers, their slots in all."""
        totals = dict.fromkeys(JOB_STATES, 0)
        for by_state in self.counts.values():
            for state, n in by_state.items():
                totals[state] = totals.get(state, 0) + n
        links = self._workers.all()
        return totals, len(links), sum(w.slots for w in links)

    def snapshot(self) -> tuple[dict[str, dict[str, int]], list[WorkerView]]:
        """Jobs per queue and state, and the workers: what the next event applies to."""
        return {q: dict(by_state) for q, by_state in self.counts.items()}, self._workers.views()

    def _track_worker(self, t: Transition, now: int) -> list[Event]:
        """Keep each worker's running jobs current; say when it goes busy or idle."""
        link = self._workers.get(t.worker) if t.worker else None
        if link is None:
            return []
        was_busy = bool(link.jobs)
        if t.state == JobState.RUNNING:
            link.jobs.add(t.job_id)
        elif t.previous == JobState.RUNNING:
            link.jobs.discard(t.job_id)
        if was_busy == bool(link.jobs):
            return []
        return [Event(kind="worker.busy" if link.jobs else "worker.idle", ts_ms=now, worker=link.name)]


def _log_lines(lines: dict[tuple[str, str, int, str | None, int | None, str | None], list[str]]) -> None:
    """The audit trail: a line per job, or one per batch of like changes (the same event, state, attempt,
    worker, exit code and reason) naming its jobs in `job_ids`. A job's line is ~10 us of broker CPU,
    against ~200 us for all the rest a short task costs it; a line per batch keeps the log readable at
    thousands of jobs a second too."""
    for (name, state, attempt, worker, exit_code, reason), ids in lines.items():
        job = {"job_id": ids[0]} if len(ids) == 1 else {"job_ids": ",".join(ids), "count": len(ids)}
        log.info(name, **job, state=state, attempt=attempt, worker=worker, exit_code=exit_code, reason=reason)

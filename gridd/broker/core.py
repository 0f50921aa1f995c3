"""The broker's use cases: each commits through the store first, then tells everyone who must know.

Rule: a reply, an event or a wake-up is only ever produced after the store call that made it true has
returned (committed). Sessions translate frames into these calls; nothing here knows about sockets.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import structlog

from gridd.broker import transitions as tr
from gridd.broker.credentials import secret_digest
from gridd.broker.events import EventHub
from gridd.broker.explain import explain
from gridd.broker.finishes import FinishWatch
from gridd.broker.matching import Budget, Lane, LaneBook, lane_of_spec, unmatched
from gridd.broker.observe import Observer
from gridd.broker.outputs import OutputRelay
from gridd.broker.principals import CLUSTER_ADMIN, ROLES
from gridd.broker.scheduler import Dispatcher
from gridd.broker.store import Store
from gridd.broker.token_sessions import TokenSessions
from gridd.broker.transitions import Transition
from gridd.broker.workers import WorkerLink, WorkerRegistry
from gridd.clock import Clock
from gridd.config import check_worker_name
from gridd.protocol.bundles import manifest_problem
from gridd.protocol.credentials import format_credential
from gridd.protocol.errors import ConfigError, ErrorCode, InvalidRequest, PayloadTooLarge
from gridd.protocol.limits import MAX_COMMAND_BYTES, MAX_OUTPUT_BYTES, MAX_STDIN_BYTES, spec_too_large
from gridd.protocol.messages import (
    AttemptView,
    BundleFile,
    Event,
    JobExplained,
    JobResult,
    JobSpec,
    JobView,
    LeasedJob,
    LeaseRef,
    Outcome,
    RevokeLeases,
    TaskOutcome,
    TokenView,
    WorkerView,
)

log = structlog.get_logger()

_KIND_BY_STATE = {
    tr.QUEUED: "job.requeued",
    tr.RUNNING: "job.started",
    tr.SUCCEEDED: "job.succeeded",
    tr.FAILED: "job.failed",
    tr.CANCELLED: "job.cancelled",
    tr.HELD: "job.held",
}
_ENDED_AS = {tr.QUEUED: "requeued"}  # an attempt that ended with its job queued again
_KIND_BY_ACTION = {"release": "job.released", "retry": "job.retried"}
PURGE_BATCH = 500  # jobs removed per transaction: a purge never holds the writer for long
DROP_BATCH = 5000  # idle queues whose lanes are deleted per transaction


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """The numbers every session needs."""

    lease_ttl_ms: int
    retry_base_ms: int
    max_bundle_bytes: int = 4 * 1024**3  # a bundle version's files, unpacked, in all
    max_command_bytes: int = MAX_COMMAND_BYTES
    max_stdin_bytes: int = MAX_STDIN_BYTES
    max_output_bytes: int = MAX_OUTPUT_BYTES
    keep_ms: int | None = None  # finished jobs older than this are purged (None: never)

    @property
    def heartbeat_s(self) -> float:
        """Workers renew three times per TTL, so one lost heartbeat never costs a lease."""
        return self.lease_ttl_ms / 3000


class Broker:
    """Jobs, leases and workers as the sessions and the reaper use them."""

    def __init__(
        self,
        store: Store,
        hub: EventHub,
        clock: Clock,
        settings: BrokerSettings,
        counts: dict[str, dict[str, int]],
        *,
        ca_digest: str | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.store = store
        self.hub = hub
        self.clock = clock
        self.settings = settings
        self.dispatcher = Dispatcher(store, clock, settings.lease_ttl_ms, on_leased=self._leased)
        self.watch = FinishWatch()
        self.outputs = OutputRelay(settings.max_output_bytes)
        self.workers = WorkerRegistry()
        self.lanes = LaneBook()  # filled from the store at start (app.py), then by each submit
        # queue -> state -> jobs: read from the store once at start, then kept by record(), so that a
        # snapshot and the events after it agree exactly.
        self.counts = counts
        self.stale_completions = 0  # results for a lease no longer current: refused
        self.foreign_completions = 0  # results sent for a lease granted to another worker: refused
        # Since start, for metrics (read at scrape time, gridd/broker/metrics.py): jobs submitted, and
        # attempts ended by what became of their job (succeeded, failed, requeued, cancelled).
        self.submitted = 0
        self.attempts_ended: Counter[str] = Counter()
        self.observer = observer or Observer()
        self._bringing = 0  # submits and retries under way (see drop_idle_lanes)
        self.port = 0  # set once listening
        self.metrics_port: int | None = None  # that of --metrics, once it listens (None: no metrics)
        self.sessions = TokenSessions()  # the open connections of each role token
        self.ca_digest = ca_digest  # sha256 of the broker CA (gridd/broker/tls.py); credentials pin it

    # ---- tokens ------------------------------------------------------------------------------------------

    def credential_for(self, secret: str) -> str:
        """The credential string a peer is given for `secret`: it names this broker's CA, so the peer
        checks the broker before it sends the secret (gridd/protocol/credentials.py)."""
        return format_credential(self.ca_digest, secret) if self.ca_digest else secret

    async def create_token(
        self, name: str, role: str, queues: Sequence[str], expires_s: float | None
    ) -> tuple[str, TokenView]:
        """A new role token: its credential string (shown once; the broker keeps only its hash) and view."""
        try:
            check_worker_name(name, "a token's name")  # a worker token's name is its worker's name
        except ConfigError as exc:
            raise InvalidRequest(str(exc)) from None
        if name == CLUSTER_ADMIN.name:
            raise InvalidRequest(f"the name {name!r} is the cluster token's (the owner of its jobs): pick another")
        if role not in ROLES:
            raise InvalidRequest(f"unknown role {role!r}; roles are: {', '.join(ROLES)}")
        if role in ("admin", "read") and queues:
            raise InvalidRequest(f"--queues limits a submit or worker token; a {role} token has none")
        secret = secrets.token_urlsafe(24)  # 192 bits
        now = self.clock.now_ms()
        expires = None if expires_s is None else now + max(1, round(expires_s * 1000))
        kept = list(dict.fromkeys(queues))
        view = await self.store.create_token(name, role, kept, secret_digest(secret), now, expires)
        log.info("token.created", token=name, role=role, queues=view.queues, expires_ms=expires)
        return self.credential_for(secret), view

    async def revoke_token(self, name: str) -> tuple[TokenView, int]:
        """Refuse the token from now on and close its open connections; returns it and how many."""
        row = await self.store.revoke_token(name, self.clock.now_ms())
        closed = self.sessions.close_token(row.id, f"token {name!r} was revoked")
        log.info("token.revoked", token=name, closed=closed)
        return row.view, closed

    # ---- clients -----------------------------------------------------------------------------------------

    async def submit(
        self,
        specs: Sequence[JobSpec],
        *,
        after: Sequence[str] = (),
        new_group: bool = False,
        group: str | None = None,
        max_running: int | None = None,
        owner: str = CLUSTER_ADMIN.name,
    ) -> tuple[list[str], str | None]:
        """Commit the jobs, owned by `owner`; returns their ids in order and their group (None if none)."""
        for number, spec in enumerate(specs, start=1):
            if not spec.argv or not spec.argv[0]:
                raise InvalidRequest("a job needs a command: gridd submit -- COMMAND [ARG...]")
            self._check_size(spec, f"job {number} of {len(specs)}: its" if len(specs) > 1 else "the job's")
        if max_running is not None and not new_group:
            raise InvalidRequest("--max-running applies to a new group of jobs (--each or --array)")
        self._bringing += 1  # its queues' lanes must not be dropped meanwhile (drop_idle_lanes)
        try:
            changed, group_id = await self.store.submit_jobs(
                specs,
                self.clock.now_ms(),
                after=after,
                new_group=new_group,
                group=group,
                max_running=max_running,
                owner=owner,
            )
        finally:
            self._bringing -= 1
        log.info(
            "jobs.submitted",
            count=len(changed),
            first=changed[0].job_id,
            queue=changed[0].queue,
            group=group_id,
            state=changed[0].state,
            owner=owner,
        )
        self.lanes.add((s.queue, lane_of_spec(s)) for s in specs)
        self.submitted += len(changed)
        self.record(changed, kind="job.submitted", log_each=False)
        return [t.job_id for t in changed], group_id

    def _check_size(self, spec: JobSpec, whose: str) -> None:
        """Refuse a spec past the broker's limits: every listing, lease and retry would carry it."""
        problem = spec_too_large(spec, self.settings.max_command_bytes, self.settings.max_stdin_bytes, whose)
        if problem is not None:
            raise PayloadTooLarge(f"{problem}; nothing was submitted")

    async def show(self, job_id: str) -> tuple[JobView, list[AttemptView]]:
        """The job, its attempts, and (queued) why no connected worker could run it, if none could."""
        job, attempts = await self.store.get_job(job_id)
        why = unmatched(job, self.workers.all())
        return (msgspec.structs.replace(job, unmatched=why) if why else job), attempts

    async def explain(self, job_id: str) -> JobExplained:
        """`gridd why`: the job, why it is where it is, and each connected worker's first obstacle."""
        running = [j for w in self.workers.all() for j in w.jobs]
        facts = await self.store.job_facts(job_id, running)
        # The workers as they are after the read: one that left meanwhile is not listed, one that came is
        # (a job it started meanwhile has no size read, and is not counted against its free budget).
        return explain(facts, self.workers.all(), self.clock.now_ms())

    async def control(self, action: str, job_ids: Sequence[str]) -> list[Outcome]:
        if action not in tr.ACTIONS:
            raise InvalidRequest(f"unknown action {action!r}; expected one of {', '.join(tr.ACTIONS)}")
        self._bringing += 1  # a retried job may bring back a queue whose lanes were dropped
        try:
            outcomes, changed, revoked = await self.store.control_jobs(action, job_ids, self.clock.now_ms())
            if action == "retry" and changed:
                self.lanes.add(await self.store.restore_lanes([t.job_id for t in changed]))
        finally:
            self._bringing -= 1
        self.record(changed, kind=_KIND_BY_ACTION.get(action))
        by_worker: dict[str, list[LeaseRef]] = {}
        for r in revoked:
            by_worker.setdefault(r.worker, []).append(r.lease)
        for name, leases in by_worker.items():
            link = self.workers.get(name)
            if link is not None:  # else the worker learns it at its next heartbeat or re-attach
                link.push(RevokeLeases(leases=leases))
        return outcomes

    async def wait(self, refs: Sequence[str], *, any_: bool = False) -> list[JobView]:
        """Return when every named job (a group: all its jobs) has finished; with `any_`, as soon as one
        has, with the finished ones only."""
        job_ids = await self.store.expand(refs)
        with self.watch.watch(job_ids, any_=any_) as waiter:
            views = await self.store.get_jobs(job_ids)  # also refuses unknown ids up front
            finished = [view for view in views if view.state in tr.FINISHED]
            for view in finished:
                waiter.finished(view.id)
            # Decided by what was read, not by the waiter: a job that finished during the read has set
            # it already, and these views still show that job unfinished.
            if not (finished if any_ else len(finished) == len(views)):
                await waiter.done.wait()
                views = await self.store.get_jobs(job_ids)
        return [v for v in views if v.state in tr.FINISHED] if any_ else views

    async def results(self, job_ids: Sequence[str], max_bytes: int, *, wait_any: bool) -> list[TaskOutcome]:
        """Task results of the named jobs; `wait_any`: once one has finished, of the finished ones.
        One store call when something has finished already, two when it had to wait."""
        if not wait_any:
            return await self.store.read_results(job_ids, max_bytes)
        with self.watch.watch(job_ids, any_=True) as waiter:
            found = await self.store.read_results(job_ids, max_bytes, finished_only=True)
            if found:
                return found
            await waiter.done.wait()
            # Those the waiter heard finish (often a few of a window of a thousand): the rest are read
            # again at the next poll anyway.
            finished = [job_id for job_id in job_ids if job_id not in waiter.remaining]
        return await self.store.read_results(finished, max_bytes, finished_only=True)

    async def put_blob(self, blob: str, size: int, offset: int, data: bytes) -> int:
        """Keep a piece of a payload; returns how many bytes of it the broker holds."""
        have, intact = await self.store.put_blob(blob, size, offset, data, self.clock.now_ms())
        if not intact:
            raise InvalidRequest(f"the content sent does not hash to {blob[:12]}…; it was discarded, send it again")
        return have

    async def push_bundle(self, name: str, files: Sequence[BundleFile]) -> tuple[int, bool, list[str], str]:
        """The version of bundle `name` holding `files` (made if needed), or 0 and the blobs to upload."""
        problem = manifest_problem(files)
        if problem is not None:
            raise InvalidRequest(f"bundle {name}: {problem}")
        total, limit = sum(f.size for f in files), self.settings.max_bundle_bytes
        if total > limit:  # the sizes are checked against the contents' before a version is made
            raise PayloadTooLarge(
                f"bundle {name} holds {total:,} bytes in all; this broker takes at most {limit:,}"
                " (gridd broker --max-bundle-bytes)"
            )
        version, created, missing, digest = await self.store.push_bundle(name, files, self.clock.now_ms())
        if created:
            log.info("bundle.pushed", bundle=f"{name}@{version}", files=len(files), bytes=sum(f.size for f in files))
        return version, created, missing, digest

    async def purge(self, older_than_ms: int | None = None) -> tuple[int, int]:
        """Remove the jobs that finished more than `older_than_ms` ago (None: the broker's keep), in
        batches of PURGE_BATCH jobs a transaction; returns how many, and the age used."""
        age = self.settings.keep_ms if older_than_ms is None else older_than_ms
        if age is None:
            raise InvalidRequest(
                "this broker keeps finished jobs for ever (--keep never): say how old (--older-than 30d)"
            )
        cutoff = self.clock.now_ms() - age
        total = 0
        while True:  # ends: each round removes jobs, and there are finitely many
            removed = await self.store.purge_finished(cutoff, PURGE_BATCH)
            self._forget(removed)
            total += len(removed)
            if len(removed) < PURGE_BATCH:
                break
        if total:
            log.info("jobs.purged", count=total, older_than_s=age / 1000)
        return total, age

    def _forget(self, removed: Sequence[tuple[str, str, str]]) -> None:
        """Count out purged jobs, and tell subscribers (a `job.purged` event says the state it left)."""
        now = self.clock.now_ms()
        events = []
        for job_id, queue, state in removed:
            by_state = self.counts.get(queue, {})
            by_state[state] = by_state.get(state, 0) - 1
            if not any(by_state.values()):
                self.counts.pop(queue, None)
            if self.hub.active:
                events.append(Event(kind="job.purged", ts_ms=now, job_id=job_id, queue=queue, previous=state))
        self.hub.publish(events)

    def status(self) -> tuple[dict[str, int], int, int]:
        """Jobs by state, connected workers, their slots in all."""
        totals = dict.fromkeys(tr.STATES, 0)
        for by_state in self.counts.values():
            for state, n in by_state.items():
                totals[state] = totals.get(state, 0) + n
        links = self.workers.all()
        return totals, len(links), sum(w.slots for w in links)

    def snapshot(self) -> tuple[dict[str, dict[str, int]], list[WorkerView]]:
        """Jobs per queue and state, and the workers: what the next event applies to."""
        return {q: dict(by_state) for q, by_state in self.counts.items()}, self.worker_views()

    def worker_views(self) -> list[WorkerView]:
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
            for w in self.workers.all()
        ]

    # ---- workers ------------------------------------------------------------------------------------------

    async def register_worker(
        self, link: WorkerLink, running: Sequence[LeaseRef], restarted: bool = True
    ) -> list[LeaseRef]:
        """Add a worker and re-attach the jobs it still runs; returns the leases it must stop."""
        self.workers.add(link)
        now = self.clock.now_ms()
        try:
            lost, changed = await self.store.attach_worker(
                link.name, running, now + self.settings.lease_ttl_ms, now, restarted, link.instance, link.lends
            )
        except BaseException:
            self.workers.remove(link)
            raise
        link.jobs = {ref.job_id for ref in running} - {ref.job_id for ref in lost}
        self.record(changed)
        log.info(
            "worker.joined",
            worker=link.name,
            host=link.host,
            slots=link.slots,
            queues=link.queues,
            cpus=link.cpus,
            memory_mb=link.memory_mb,
            tags=link.tags,
            attached=len(running) - len(lost),
            lost=len(lost),
        )
        self.hub.publish([Event(kind="worker.joined", ts_ms=now, worker=link.name, message=link.host)])
        return lost

    def set_worker_state(self, link: WorkerLink, state: str, accepting: bool) -> None:
        """The worker's machine changed hands (or it began draining); one that takes no jobs now gets
        none: its waiting lease request is answered empty."""
        if not accepting:
            self.dispatcher.withdraw(link.name)
        if state != link.state:
            log.info("worker.state_changed", worker=link.name, state=state, previous=link.state)
            link.observe(state)
            now = self.clock.now_ms()
            self.hub.publish([Event(kind="worker.state", ts_ms=now, worker=link.name, state=state)])

    def unregister_worker(self, link: WorkerLink) -> None:
        self.workers.remove(link)
        self.lanes.forget(link)
        log.info("worker.left", worker=link.name)
        self.hub.publish([Event(kind="worker.left", ts_ms=self.clock.now_ms(), worker=link.name)])

    async def lease(
        self, link: WorkerLink, max_jobs: int, cpus: int | None = None, memory_mb: int | None = None
    ) -> list[LeasedJob]:
        """Jobs for `link`, from the lanes it may lease at the time of leasing, that fit its free budget
        (`cpus`, `memory_mb`: None, no limit) and each its size."""
        budget = Budget.of(link, cpus, memory_mb)
        return await self.dispatcher.lease(link.name, lambda: self._leasable(link), max_jobs, budget, link.instance)

    def _leasable(self, link: WorkerLink) -> list[Lane]:
        """`link`'s lanes in the queues that have queued jobs now (the counts are exact: record())."""
        counts = self.counts
        return [x for x in self.lanes.for_worker(link) if counts.get(x[0], {}).get(tr.QUEUED, 0) > 0]

    async def drop_idle_lanes(self) -> int:
        """Forget the lanes of queues with no job that could be leased now or later (none waiting,
        queued, held or running), in memory and in the store; returns how many queues. Skipped while a
        submit or a retry is under way, which may be bringing one of them back."""
        if self._bringing:
            return 0
        counts = self.counts
        idle = [
            q for q in self.lanes.queues() if not any(n for s, n in counts.get(q, {}).items() if s not in tr.FINISHED)
        ]
        if not idle:
            return 0
        # Memory first, in the same step as the decision: a submit that starts after it adds its lanes back.
        self.lanes.drop(idle)
        for start in range(0, len(idle), DROP_BATCH):
            await self.store.drop_lanes(idle[start : start + DROP_BATCH])
        log.info("lanes.dropped", queues=len(idle), lanes_left=len(self.lanes))
        return len(idle)

    def _leased(self, worker: str, jobs: Sequence[LeasedJob]) -> None:
        self.record(
            [Transition(j.job_id, tr.RUNNING, j.spec.queue, j.attempt, worker, previous=tr.QUEUED) for j in jobs]
        )

    async def renew(self, link: WorkerLink, leases: Sequence[LeaseRef]) -> tuple[list[LeaseRef], int]:
        now = self.clock.now_ms()
        link.last_seen_ms = now
        deadline = now + self.settings.lease_ttl_ms
        lost = await self.store.renew_leases(link.name, leases, deadline, link.instance) if leases else []
        return lost, deadline

    async def complete(self, link: WorkerLink, results: Sequence[JobResult]) -> list[Outcome]:
        now = self.clock.now_ms()
        link.last_seen_ms = now
        results = [self._cut_output(link, r) for r in results]
        outcomes, changed = await self.store.complete_jobs(
            link.name, results, now, self.settings.retry_base_ms, link.instance, link.lends
        )
        for o in outcomes:
            if o.code == ErrorCode.BAD_RESULT:
                log.warning("result.refused", job_id=o.job_id, worker=link.name, state=o.state, error=o.message)
            elif o.code == ErrorCode.FOREIGN_LEASE:
                self.foreign_completions += 1
                log.warning(
                    "lease.foreign_completion",
                    job_id=o.job_id,
                    worker=link.name,
                    instance=link.instance,
                    error=o.message,
                    refused_total=self.foreign_completions,
                )
            elif o.code:
                self.stale_completions += 1
                log.warning(
                    "lease.stale_completion",
                    job_id=o.job_id,
                    worker=link.name,
                    state=o.state,
                    lease=next(r.lease for r in results if r.job_id == o.job_id),
                    refused_total=self.stale_completions,
                )
        self.record(changed)
        return outcomes

    def _cut_output(self, link: WorkerLink, result: JobResult) -> JobResult:
        """The broker keeps at most max_output_bytes of each stream, whatever a worker sends: past it, the
        output is cut to its first max_output_bytes and marked truncated (cut rather than refused: the
        result and the head of the output are kept, which is what the worker itself keeps)."""
        limit = self.settings.max_output_bytes
        if len(result.stdout) <= limit and len(result.stderr) <= limit:
            return result
        log.warning(
            "output.cut",
            job_id=result.job_id,
            worker=link.name,
            stdout_bytes=len(result.stdout),
            stderr_bytes=len(result.stderr),
            limit=limit,
        )
        return msgspec.structs.replace(
            result,
            stdout=result.stdout[:limit],
            stderr=result.stderr[:limit],
            stdout_truncated=result.stdout_truncated or len(result.stdout) > limit,
            stderr_truncated=result.stderr_truncated or len(result.stderr) > limit,
        )

    async def return_leases(self, link: WorkerLink, leases: Sequence[LeaseRef]) -> None:
        self.record(await self.store.return_leases(link.name, leases, link.instance), kind="job.returned")

    async def expire_leases(self, now_ms: int) -> list[Transition]:
        # A lease expires when its worker went silent: counted as lent if a worker of that name that is
        # still connected lends (one that is gone is unknown, NULL).
        changed = await self.store.expire_leases(now_ms, {w.name for w in self.workers.all() if w.lends})
        self.record(changed)
        return changed

    # ---- fan-out ------------------------------------------------------------------------------------------

    def record(self, changed: Sequence[Transition], kind: str | None = None, *, log_each: bool = True) -> None:
        """Count, log, publish, wake the waiters and the dispatcher for transitions that just committed."""
        if not changed:
            return
        now = self.clock.now_ms()
        events: list[Event] = []
        ran_ms: list[int] = []
        for t in changed:
            by_state = self.counts.setdefault(t.queue, {})
            if t.previous is not None:
                by_state[t.previous] = by_state.get(t.previous, 0) - 1
                if t.previous == tr.RUNNING:  # an attempt ended: its result, an expiry, a hand-back, a cancel
                    self.attempts_ended[_ENDED_AS.get(t.state, t.state)] += 1
                    if t.ran_ms is not None:
                        ran_ms.append(t.ran_ms)
            by_state[t.state] = by_state.get(t.state, 0) + 1
            name = kind or _KIND_BY_STATE.get(t.state, "job.changed")
            if log_each:
                log.info(
                    name,
                    job_id=t.job_id,
                    state=t.state,
                    attempt=t.attempt,
                    worker=t.worker,
                    exit_code=t.exit_code,
                    reason=t.reason,
                )
            if self.hub.active:  # nobody listening: building events is wasted work
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
            events.extend(self._track_worker(t, now))
        self.hub.publish(events)
        if ran_ms:
            self.observer.attempts_ended(ran_ms)
        self.watch.finished(t.job_id for t in changed if t.state in tr.FINISHED)
        # Not only a queued job can make work eligible: a finished or held one may free a --max-running
        # token, a finished one a dependency. Only a lease cannot.
        self.dispatcher.wake(eligible=any(t.state != tr.RUNNING for t in changed))

    def _track_worker(self, t: Transition, now: int) -> list[Event]:
        """Keep each worker's running jobs current; say when it goes busy or idle."""
        link = self.workers.get(t.worker) if t.worker else None
        if link is None:
            return []
        was_busy = bool(link.jobs)
        if t.state == tr.RUNNING:
            link.jobs.add(t.job_id)
        elif t.previous == tr.RUNNING:
            link.jobs.discard(t.job_id)
        if was_busy == bool(link.jobs):
            return []
        return [Event(kind="worker.busy" if link.jobs else "worker.idle", ts_ms=now, worker=link.name)]


def _id_order(job_id: str) -> tuple[int, str]:
    return (len(job_id), job_id)

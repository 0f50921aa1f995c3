"""What clients ask of jobs: submit, show, explain, control (cancel, hold, release, retry), wait, read
results; and the payloads jobs read (blobs, bundles).

Rule: each use case commits through the store first, then has the ledger tell everyone; a refusal
(InvalidRequest, PayloadTooLarge) is raised before anything is written, so a refused request loses nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import msgspec
import structlog

from gridd.broker import transitions as tr
from gridd.broker.explain import explain
from gridd.broker.finishes import FinishWatch, StandingWatch
from gridd.broker.housekeeping import Housekeeping
from gridd.broker.ledger import Ledger
from gridd.broker.matching import LaneBook, lane_of_spec, unmatched
from gridd.broker.principals import CLUSTER_ADMIN
from gridd.broker.settings import BrokerSettings
from gridd.broker.store import Store
from gridd.broker.store.interface import KeyedSubmit, SubmitKey
from gridd.broker.workers import WorkerRegistry
from gridd.clock import Clock
from gridd.protocol.bundles import manifest_problem
from gridd.protocol.errors import InvalidRequest, KeyConflict, PayloadTooLarge
from gridd.protocol.limits import all_fit, whose_job
from gridd.protocol.messages import (
    AttemptView,
    BundleFile,
    JobExplained,
    JobSpec,
    JobView,
    LeaseRef,
    Outcome,
    RevokeLeases,
    TaskOutcome,
)
from gridd.protocol.states import FINISHED

log = structlog.get_logger()

_KIND_BY_ACTION = {"release": "job.released", "retry": "job.retried"}


class ClientDesk:
    """The requests of clients (the CLI, the TUI, user programs) about jobs and their payloads."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: BrokerSettings,
        workers: WorkerRegistry,
        lanes: LaneBook,
        watch: FinishWatch,
        ledger: Ledger,
        housekeeping: Housekeeping,
    ) -> None:
        self._store = store
        self._clock = clock
        self._settings = settings
        self._workers = workers
        self._lanes = lanes
        self._watch = watch
        self._ledger = ledger
        self._housekeeping = housekeeping
        self.submitted = 0  # jobs submitted since start, for metrics (read at scrape time)

    async def submit(
        self,
        specs: Sequence[JobSpec],
        *,
        after: Sequence[str] = (),
        new_group: bool = False,
        group: str | None = None,
        max_running: int | None = None,
        owner: str = CLUSTER_ADMIN.name,
        key: SubmitKey | None = None,
    ) -> tuple[list[str], str | None]:
        """Commit the jobs, owned by `owner`; returns their ids in order and their group (None if none).
        Under a `key` `owner` used before for the same request: the ids and group that made, and nothing
        new (KeyConflict if for another request)."""
        fits = all_fit(specs, self._settings.max_command_bytes, self._settings.max_stdin_bytes)
        for number, spec in enumerate(specs, start=1):
            if not spec.argv or not spec.argv[0]:
                raise InvalidRequest("a job needs a command: gridd submit -- COMMAND [ARG...]")
            whose = functools.partial(whose_job, number, len(specs))  # made only for a refusal
            self._settings.check_spec(spec, whose, "nothing was submitted", fits=fits)
            if spec.schedule is not None:  # only a schedule's firing names it (store/schedules.py)
                raise InvalidRequest("a job names a schedule only when that schedule submitted it (gridd schedule add)")
        if max_running is not None and not new_group:
            raise InvalidRequest("--max-running applies to a new group of jobs (--each or --array)")
        with self._housekeeping.bringing():  # its queues' lanes must not be dropped meanwhile
            if key is not None:
                keyed = await self._submit_keyed(specs, key, after, new_group, group, max_running, owner)
                if keyed.replayed:
                    return keyed.job_ids, keyed.group
                changed, group_id = keyed.changed, keyed.group
            else:
                changed, group_id = await self._store.submit_jobs(
                    specs,
                    self._clock.now_ms(),
                    after=after,
                    new_group=new_group,
                    group=group,
                    max_running=max_running,
                    owner=owner,
                )
        log.info(
            "jobs.submitted",
            count=len(changed),
            first=changed[0].job_id,
            queue=changed[0].queue,
            group=group_id,
            state=changed[0].state,
            owner=owner,
        )
        self._lanes.add((s.queue, lane_of_spec(s)) for s in specs)
        self.submitted += len(changed)
        self._ledger.record(changed, kind="job.submitted", log_each=False)
        return [t.job_id for t in changed], group_id

    async def _submit_keyed(
        self,
        specs: Sequence[JobSpec],
        key: SubmitKey,
        after: Sequence[str],
        new_group: bool,
        group: str | None,
        max_running: int | None,
        owner: str,
    ) -> KeyedSubmit:
        """The submit under its key: made, or found made (logged, since its jobs were not made again)."""
        try:
            keyed = await self._store.submit_keyed(
                specs,
                self._clock.now_ms(),
                key,
                after=after,
                new_group=new_group,
                group=group,
                max_running=max_running,
                owner=owner,
            )
        except KeyConflict as exc:
            log.warning("submit.key_conflict", key=key.name, part=key.part, owner=owner, error=str(exc))
            raise
        if keyed.replayed:
            log.info("submit.key_replayed", key=key.name, part=key.part, owner=owner, first=keyed.job_ids[0])
        return keyed

    async def show(self, job_id: str) -> tuple[JobView, list[AttemptView]]:
        """The job, its attempts, and (queued) why no connected worker could run it, if none could."""
        job, attempts = await self._store.get_job(job_id)
        why = unmatched(job, self._workers.all())
        return (msgspec.structs.replace(job, unmatched=why) if why else job), attempts

    async def explain(self, job_id: str) -> JobExplained:
        """`gridd why`: the job, why it is where it is, and each connected worker's first obstacle."""
        running = [j for w in self._workers.all() for j in w.jobs]
        facts = await self._store.job_facts(job_id, running)
        # The workers as they are after the read: one that left meanwhile is not listed, one that came is
        # (a job it started meanwhile has no size read, and is not counted against its free budget).
        return explain(facts, self._workers.all(), self._clock.now_ms())

    async def control(self, action: str, job_ids: Sequence[str]) -> list[Outcome]:
        if action not in tr.ACTIONS:
            raise InvalidRequest(f"unknown action {action!r}; expected one of {', '.join(tr.ACTIONS)}")
        with self._housekeeping.bringing():  # a retried job may bring back a queue whose lanes were dropped
            outcomes, changed, revoked, restored = await self._store.control_jobs(action, job_ids, self._clock.now_ms())
            self._lanes.add(restored)
        self._ledger.record(changed, kind=_KIND_BY_ACTION.get(action))
        by_worker: dict[str, list[LeaseRef]] = {}
        for r in revoked:
            by_worker.setdefault(r.worker, []).append(r.lease)
        for name, leases in by_worker.items():
            link = self._workers.get(name)
            if link is not None:  # else the worker learns it at its next heartbeat or re-attach
                link.push(RevokeLeases(leases=leases))
        return outcomes

    async def wait(self, refs: Sequence[str], *, any_: bool = False) -> list[JobView]:
        """Return when every named job (a group: all its jobs) has finished; with `any_`, as soon as one
        has, with the finished ones only."""
        job_ids = await self._store.expand(refs)
        with self._watch.watch(job_ids, any_=any_) as waiter:
            views = await self._store.get_jobs(job_ids)  # also refuses unknown ids up front
            finished = [view for view in views if view.state in FINISHED]
            for view in finished:
                waiter.finished(view.id)
            # Decided by what was read, not by the waiter: a job that finished during the read has set
            # it already, and these views still show that job unfinished.
            if not (finished if any_ else len(finished) == len(views)):
                await waiter.done.wait()
                views = await self._store.get_jobs(job_ids)
        return [v for v in views if v.state in FINISHED] if any_ else views

    async def results(
        self, job_ids: Sequence[str], max_bytes: int, *, wait_any: bool, standing: StandingWatch | None = None
    ) -> list[TaskOutcome]:
        """Task results of the named jobs; `wait_any`: once one has finished, of the finished ones.
        One store call when something has finished already, two when it had to wait. A long poll of a
        connection that keeps a `standing` watch reads only the jobs that watch cannot vouch for."""
        if not wait_any:
            return await self._store.read_results(job_ids, max_bytes)
        if standing is not None and not standing.busy:
            standing.busy = True
            try:
                return await self._standing_results(job_ids, max_bytes, standing)
            except Exception:
                standing.close()  # an unknown job, say: its next poll reads everything again, and refuses it again
                raise
            finally:
                standing.busy = False
        with self._watch.watch(job_ids, any_=True) as waiter:
            found = await self._store.read_results(job_ids, max_bytes, finished_only=True)
            if found:
                return found
            await waiter.done.wait()
            # Those the waiter heard finish (often a few of a window of a thousand): the rest are read
            # again at the next poll anyway.
            finished = [job_id for job_id in job_ids if job_id not in waiter.remaining]
        return await self._store.read_results(finished, max_bytes, finished_only=True)

    async def _standing_results(
        self, job_ids: Sequence[str], max_bytes: int, standing: StandingWatch
    ) -> list[TaskOutcome]:
        asked = standing.to_read(job_ids)  # watched from here on, before the read
        while True:
            found = await self._store.read_results(asked, max_bytes, finished_only=True) if asked else []
            standing.read(asked, [o.job_id for o in found])
            if found:
                return found
            await standing.wait()
            asked = standing.ended(job_ids)

    async def put_blob(self, blob: str, size: int, offset: int, data: bytes) -> int:
        """Keep a piece of a payload; returns how many bytes of it the broker holds."""
        have, intact = await self._store.put_blob(blob, size, offset, data, self._clock.now_ms())
        if not intact:
            raise InvalidRequest(f"the content sent does not hash to {blob[:12]}…; it was discarded, send it again")
        return have

    async def push_bundle(self, name: str, files: Sequence[BundleFile]) -> tuple[int, bool, list[str], str]:
        """The version of bundle `name` holding `files` (made if needed), or 0 and the blobs to upload."""
        problem = manifest_problem(files)
        if problem is not None:
            raise InvalidRequest(f"bundle {name}: {problem}")
        total, limit = sum(f.size for f in files), self._settings.max_bundle_bytes
        if total > limit:  # the sizes are checked against the contents' before a version is made
            raise PayloadTooLarge(
                f"bundle {name} holds {total:,} bytes in all; this broker takes at most {limit:,}"
                " (gridd broker --max-bundle-bytes)"
            )
        version, created, missing, digest = await self._store.push_bundle(name, files, self._clock.now_ms())
        if created:
            log.info("bundle.pushed", bundle=f"{name}@{version}", files=len(files), bytes=sum(f.size for f in files))
        return version, created, missing, digest

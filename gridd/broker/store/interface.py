"""The store as the broker sees it: its use cases, the seam where a backend plugs in (SQLite today,
sqlite.py; PostgreSQL next). The broker holds a `Store` and knows nothing of the database behind it.

Rules every backend keeps (DESIGN.md):
- Each use case is one transaction. Nothing it wrote is seen by anyone, nor returned to its caller,
  before it committed; a failure to commit is a StorageFailed, and then nothing of it happened.
- Use cases take and return batches: the cost of a store is its round trips, not its rows.
- A job's state changes only as the transition table says (gridd/broker/transitions.py), and each
  change is returned as a Transition, for the broker to count, publish and wake waiters with.
- A lease is fenced: a result, renewal or hand-back is accepted only for the job's current lease, from
  the worker instance it was granted to.
- Durable use cases (submit, results, control, tokens, bundles, purges) are on disk when they return;
  the others (leases, renewals, blob pieces, token use) may be lost with the power and are done again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container, Sequence
from typing import Protocol

from gridd.broker.matching import Lane
from gridd.broker.store.gang_rows import GangGrant, QueuedGang
from gridd.broker.store.records import Announced as Announced
from gridd.broker.store.records import Ask as Ask
from gridd.broker.store.records import JobFacts as JobFacts
from gridd.broker.store.records import KeyedSubmit as KeyedSubmit
from gridd.broker.store.records import Revoked as Revoked
from gridd.broker.store.records import SubmitKey as SubmitKey
from gridd.broker.store.records import TokenRow as TokenRow
from gridd.broker.store.schedule_rows import DueSchedule, Fired, Firing
from gridd.broker.transitions import Transition
from gridd.protocol.messages import (
    AttemptView,
    BundleFile,
    BundleView,
    JobResult,
    JobSpec,
    JobView,
    LeasedJob,
    LeaseRef,
    Outcome,
    ReportRow,
    ScheduleRun,
    ScheduleView,
    TaskOutcome,
    TokenView,
)


class Store(Protocol):
    """Every use case the broker asks of its store."""

    # ---- other brokers on the same store -------------------------------------------------------------------

    async def follow_peers(
        self, deliver: Callable[[Announced], Awaitable[None]], resync: Callable[[], Awaitable[None]]
    ) -> None:
        """Until cancelled, `deliver` what other brokers sharing this store commit (each announced use case's
        jobs, changes.py), in commit order, and call `resync` whenever some may have been missed (at the
        start, after the link to the database came back). Returns at once for a store no other broker can
        share (SQLite: the data dir's lock)."""
        ...

    # ---- jobs in: submit ------------------------------------------------------------------------------

    async def submit_jobs(
        self,
        specs: Sequence[JobSpec],
        now_ms: int,
        *,
        after: Sequence[str] = (),
        new_group: bool = False,
        group: str | None = None,
        max_running: int | None = None,
        owner: str = "admin",
    ) -> tuple[list[Transition], str | None]:
        """Insert jobs, owned by `owner`; returns them in order with their new ids, and their group (a new
        one, or `group`). They wait for the jobs named in `after` (groups expanded), or are cancelled at
        once, that job named as the reason, if one of those has failed or been cancelled already."""
        ...

    async def submit_keyed(
        self,
        specs: Sequence[JobSpec],
        now_ms: int,
        key: SubmitKey,
        *,
        after: Sequence[str] = (),
        new_group: bool = False,
        group: str | None = None,
        max_running: int | None = None,
        owner: str = "admin",
    ) -> KeyedSubmit:
        """submit_jobs under a key of `owner`'s, checked and kept in the same transaction: a key (and part)
        `owner` used before, unexpired, with the same digest returns the jobs it made and makes none; with
        another digest it is a KeyConflict naming them, and nothing is made. An expired key is forgotten
        and used afresh. A later part is kept until its first part expires, and must name that part's
        group. (owner, key, part) is unique: a backend whose transactions run side by side (several brokers
        on one store) must make the second of two submits under one key find the first's, never make jobs."""
        ...

    async def forget_keys(self, now_ms: int, max_keys: int) -> int:
        """Remove up to `max_keys` submit keys expired by `now_ms`; returns how many."""
        ...

    # ---- leasing --------------------------------------------------------------------------------------

    async def lease_for(self, asks: Sequence[Ask], now_ms: int, ttl_ms: int) -> list[list[LeasedJob]]:
        """For each ask, in order: up to `max_jobs` of the best eligible jobs (priority, then age) of its
        lanes, taken greedily in that order while they fit its budget, each lease a fresh random fencing
        token. One transaction for them all; a lane that gave all it had to one ask is not read again for
        a later ask whose budget it covers."""
        ...

    async def renew_leases(
        self, worker: str, leases: Sequence[LeaseRef], deadline_ms: int, instance: str = ""
    ) -> list[LeaseRef]:
        """Extend the leases `worker` (its `instance`) still holds; returns those it no longer holds."""
        ...

    async def queued_gangs(self, limit: int) -> list[QueuedGang]:
        """Up to `limit` queued gang jobs (submit --gang) not held back by their group, the best first
        (priority, then age), those in a retry delay too. Ordinary leasing (lease_for) never takes a gang."""
        ...

    async def lease_gangs(self, grants: Sequence[GangGrant], now_ms: int, ttl_ms: int) -> list[list[LeasedJob]]:
        """Lease each gang whole, in one transaction: one lease per seat, by rank (a fresh random fencing
        token each, the gang's variables in its spec: gang_rows.member_spec), the job running under rank 0's;
        [] for a gang no longer queued. A member's lease is renewed and re-attached as any; the attempt ends
        at its last member's success or first failure (complete_jobs) or lapse (expire_leases)."""
        ...

    async def next_eligible_ms(self, now_ms: int) -> int | None:
        """When the next job held back by its retry delay becomes eligible, if any is."""
        ...

    async def promote_due(self, now_ms: int, max_jobs: int) -> tuple[list[Transition], int | None]:
        """Queue up to `max_jobs` scheduled jobs whose start time is `now_ms` or before, earliest first (each
        waiting instead while dependencies remain); returns them, and the earliest start time of the jobs
        still scheduled (None: none is). A job is promoted once, whoever else asks at the same time."""
        ...

    async def extend_running_leases(self, deadline_ms: int) -> int:
        """After a restart: give every running lease until `deadline_ms` to be re-attached."""
        ...

    async def known_lanes(self) -> list[Lane]:
        """Every (queue, lane) that holds a job someone may lease."""
        ...

    async def drop_lanes(self, queues: Sequence[str]) -> None:
        """Forget the lanes of these queues (none of their jobs can be leased)."""
        ...

    # ---- attempts end: results, expiry, hand-back, re-attach -------------------------------------------

    async def complete_jobs(
        self,
        worker: str,
        results: Sequence[JobResult],
        now_ms: int,
        retry_base_ms: int,
        instance: str = "",
        lent: bool | None = None,
    ) -> tuple[list[Outcome], list[Transition]]:
        """Record each attempt's outcome exactly once: a result for a lease that is not current is refused
        (STALE_LEASE), and so is one for a lease granted to another worker or instance (FOREIGN_LEASE)."""
        ...

    async def expire_leases(self, now_ms: int, lending: Container[str] = ()) -> list[Transition]:
        """Leases past their deadline: their jobs queued again, or failed after their last attempt.
        `lending`: the workers known to lend a desktop."""
        ...

    async def attach_worker(
        self,
        worker: str,
        running: Sequence[LeaseRef],
        deadline_ms: int,
        now_ms: int,
        restarted: bool = True,
        instance: str = "",
        lends: bool = False,
    ) -> tuple[list[LeaseRef], list[Transition]]:
        """A (re)connecting worker names the jobs it still runs: those leases are renewed, the others it
        names are returned as lost; those it does not name expire (`restarted`) or go back unspent."""
        ...

    async def return_leases(self, worker: str, leases: Sequence[LeaseRef], instance: str = "") -> list[Transition]:
        """A draining worker hands jobs back: queued again at once, the attempt not spent."""
        ...

    # ---- control ----------------------------------------------------------------------------------------

    async def control_jobs(
        self, action: str, refs: Sequence[str], now_ms: int
    ) -> tuple[list[Outcome], list[Transition], list[Revoked], list[Lane]]:
        """Apply cancel/hold/release/retry to each job named (a group: all its jobs) where the table allows
        it; refuse the rest, one Outcome each. Returns the running leases it revoked too, and the lanes of
        the jobs it retried (known again: their queue's may have been dropped)."""
        ...

    async def expand(self, refs: Sequence[str]) -> list[str]:
        """Job ids for job and group ids; UnknownJob for one that does not exist."""
        ...

    async def purge_finished(self, cutoff_ms: int, max_jobs: int) -> list[tuple[str, str, str]]:
        """Remove up to `max_jobs` jobs finished before `cutoff_ms` with what only they refer to; returns
        (id, queue, state) of each."""
        ...

    # ---- reads --------------------------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> tuple[JobView, list[AttemptView]]: ...

    async def get_jobs(self, job_ids: Sequence[str]) -> list[JobView]:
        """In the order named; UnknownJob for the first that does not exist."""
        ...

    async def list_jobs(
        self,
        state: str | None,
        queue: str | None,
        limit: int,
        before: str | None = None,
        group: str | None = None,
        owner: str | None = None,
    ) -> tuple[list[JobView], bool]:
        """Newest first, older than `before`; limit 0 = all. True: the page was cut short by its size."""
        ...

    async def job_facts(self, job_id: str, running: Sequence[str]) -> JobFacts: ...

    async def read_output(self, job_id: str, stream: str) -> tuple[bytes, bool]:
        """A job's captured stdout or stderr, and whether it was truncated."""
        ...

    async def read_results(
        self, job_ids: Sequence[str], max_bytes: int, *, finished_only: bool = False
    ) -> list[TaskOutcome]:
        """Task jobs' results, in order, as many as fit in `max_bytes` (at least one)."""
        ...

    async def report(self, by: str, since_ms: int, owner: str | None = None) -> list[ReportRow]:
        """Accounting per owner, queue or worker of the attempts ended since `since_ms`."""
        ...

    async def foreign_job(self, refs: Sequence[str], owner: str) -> tuple[str, str] | None:
        """The first of `refs` holding a job of someone else than `owner`, and whose."""
        ...

    async def job_inputs(self, job_ids: Sequence[str]) -> tuple[set[str], set[str]]:
        """The bundle versions and the blobs these jobs read."""
        ...

    async def count_by_queue(self) -> dict[str, dict[str, int]]:
        """queue -> state -> number of jobs."""
        ...

    # ---- role tokens --------------------------------------------------------------------------------------

    async def create_token(
        self, name: str, role: str, queues: Sequence[str], secret_sha256: str, now_ms: int, expires_ms: int | None
    ) -> TokenView:
        """Keep a new token by the hash of its secret; InvalidRequest if its name is held by one in force."""
        ...

    async def list_tokens(self) -> list[TokenView]: ...

    async def revoke_token(self, name: str, now_ms: int) -> TokenRow: ...

    async def find_token(self, secret_sha256: str) -> TokenRow | None:
        """The token of that secret hash, revoked or not (asked at every connection: keep it quick)."""
        ...

    async def touch_tokens(self, used: Sequence[tuple[int, int]]) -> None:
        """Record (ms, token id): when each token was last used."""
        ...

    # ---- blobs and bundles ----------------------------------------------------------------------------------

    async def put_blob(self, blob: str, size: int, offset: int, data: bytes, now_ms: int) -> tuple[int, bool]:
        """Keep a piece of a blob; the bytes held, and False if the whole did not hash to its id."""
        ...

    async def get_blob(self, blob: str, offset: int) -> tuple[int, bytes]:
        """A complete blob's size and its stored bytes from `offset` (one piece at most)."""
        ...

    async def push_bundle(
        self, name: str, files: Sequence[BundleFile], now_ms: int
    ) -> tuple[int, bool, list[str], str]:
        """(version, created, missing blobs, digest) of bundle `name` holding `files`."""
        ...

    async def list_bundles(self, name: str | None) -> list[BundleView]: ...

    async def get_bundle(self, ref: str) -> tuple[BundleView, list[BundleFile]]: ...

    # ---- periodic schedules -----------------------------------------------------------------------------------

    async def add_schedule(
        self,
        name: str,
        cron: str,
        tz: str,
        catch_up: str,
        spec: JobSpec,
        next_slot_ms: int,
        owner: str,
        now_ms: int,
    ) -> ScheduleView:
        """Keep a new schedule, first firing at `next_slot_ms`; InvalidRequest if its name is taken."""
        ...

    async def list_schedules(self, owner: str | None) -> list[ScheduleView]:
        """Every schedule by name (`owner`: only that owner's)."""
        ...

    async def get_schedule(self, name: str, runs: int) -> tuple[ScheduleView, list[ScheduleRun]]:
        """A schedule and its latest `runs` runs, the latest first; InvalidRequest if there is none."""
        ...

    async def change_schedule(self, name: str, action: str, next_slot_ms: int | None) -> ScheduleView:
        """pause, resume (next firing at `next_slot_ms`) or remove a schedule (its jobs stay)."""
        ...

    async def due_schedules(self, now_ms: int, limit: int) -> list[DueSchedule]:
        """Running schedules whose next slot is at or before `now_ms`, the earliest first."""
        ...

    async def next_slot_ms(self) -> int | None:
        """The earliest next slot of the running schedules."""
        ...

    async def fire_schedules(self, firings: Sequence[Firing], now_ms: int) -> list[Fired]:
        """Fire each schedule still at its due slot: in one transaction, move it to its next slot only if
        no one did (a conditional update) and submit one job per slot, naming it; so every slot fires
        once, with several brokers on one store and across restarts."""
        ...

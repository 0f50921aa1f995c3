"""The broker's requests as methods: `BrokerCalls` owns one connection and turns each call into a request
and its reply into plain values (submit, show, jobs, control, wait, results, tokens, events, ...).

Rule: nothing here knows tasks' sugar, handles or fan-out; those build on a BrokerCalls they are given
(client/handles.py, client/mapping.py), and `Client` (client/api.py) is BrokerCalls with them on top.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime

from gridd.client import blobs, submits
from gridd.client.connection import Connection
from gridd.client.schedule_calls import ScheduleCalls
from gridd.client.start_time import start_at_ms
from gridd.protocol.errors import exception_for
from gridd.protocol.messages import (
    MAX_LIST_ROWS,
    AttemptView,
    ControlJobs,
    CreateToken,
    Event,
    EventBatch,
    ExplainJob,
    FollowOutput,
    GetReport,
    GetStatus,
    JobExplained,
    JobSpec,
    JobView,
    ListJobs,
    ListTokens,
    ListWorkers,
    Outcome,
    OutputChunk,
    OutputChunks,
    PurgeJobs,
    ReadOutput,
    ReadResults,
    ReportRow,
    RevokeToken,
    ShowJob,
    StatusReported,
    SubmitJobs,
    Subscribe,
    Subscribed,
    TaskCall,
    TaskOutcome,
    TokenView,
    WaitJobs,
    WorkerView,
)


class BrokerCalls(ScheduleCalls):
    """One method per broker request, on the connection it is given and owns for its life (`connect(...)`
    opens the connection, makes the client, and closes the connection when its block ends)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    async def submit(
        self,
        argv: Sequence[str],
        *,
        queue: str = "default",
        priority: int = 0,
        max_attempts: int = 3,
        timeout_s: float | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        after: Sequence[str] = (),
        bundle: str | None = None,
        cpus: int = 1,
        memory_mb: int = 0,
        requires: Mapping[str, str] | None = None,
        key: str | None = None,
        key_ttl_s: float | None = None,
        at: datetime | None = None,
        delay_s: float | None = None,
    ) -> str:
        """Submit one command; returns its id once the job is durable. It runs on a worker with `cpus`
        and `memory_mb` (MiB) free for it, and every tag of `requires`. `bundle` ("NAME" or "NAME@N"):
        run it inside that bundle (gridd bundle push); "NAME" is its latest version at submit. `at` (a
        naive datetime: local time) or `delay_s`: not before then; `scheduled` until (start_time.py).
        `key`: submit at most once (submit_many says how)."""
        spec = JobSpec(
            argv=list(argv),
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            timeout_s=timeout_s,
            env=dict(env or {}),
            stdin=stdin,
            bundle=bundle,
            cpus=cpus,
            memory_mb=memory_mb,
            requires=dict(requires or {}),
            start_at_ms=start_at_ms(at, delay_s),
        )
        return (await self.submit_many([spec], after=after, key=key, key_ttl_s=key_ttl_s))[0]

    async def submit_many(
        self,
        specs: Sequence[JobSpec],
        *,
        after: Sequence[str] = (),
        key: str | None = None,
        key_ttl_s: float | None = None,
    ) -> list[str]:
        """Submit many jobs; returns their ids in order, once every one is durable.

        `key` (printable ASCII, no spaces, at most 200 characters) makes the submit idempotent: the same
        key again with the same request returns the ids the first made and makes no job, so a submit
        whose reply was lost can always be retried; with another request it raises KeyConflict. The
        broker keeps a key `key_ttl_s` (default 7 days, between a minute and 365 days), per credential."""
        ids, _ = await self._submit(specs, after=after, new_group=False, max_running=None, key=key, key_ttl_s=key_ttl_s)
        return ids

    async def submit_group(
        self,
        specs: Sequence[JobSpec],
        *,
        after: Sequence[str] = (),
        max_running: int | None = None,
        key: str | None = None,
        key_ttl_s: float | None = None,
    ) -> tuple[list[str], str]:
        """Submit jobs as one group (at most `max_running` of them running at once); returns their ids
        in order and the group's id, which names all of them wherever a job id is taken. `key`: as for
        submit_many; it names the whole group (the same key again returns the same group and ids)."""
        ids, group = await self._submit(
            specs, after=after, new_group=True, max_running=max_running, key=key, key_ttl_s=key_ttl_s
        )
        assert group is not None  # noqa: S101 - the broker always names a new group
        return ids, group

    async def _submit(
        self,
        specs: Sequence[JobSpec],
        *,
        after: Sequence[str],
        new_group: bool,
        max_running: int | None,
        key: str | None,
        key_ttl_s: float | None,
    ) -> tuple[list[str], str | None]:
        submits.check_request(specs, key, key_ttl_s)
        welcome = self.connection.welcome
        submits.check_sizes(specs, welcome.max_command_bytes, welcome.max_stdin_bytes)
        # Every chunk's features at once, before the first is sent: a submit the broker is too old for sends nothing.
        self.connection.refuse_unknown_features(SubmitJobs(rid=0, jobs=list(specs), key=key))
        sending = submits.requests(
            specs, after=after, new_group=new_group, max_running=max_running, key=key, key_ttl_s=key_ttl_s
        )
        try:
            request = next(sending)
            while True:
                request = sending.send(await self.connection.request(request))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def submit_chunk(
        self,
        specs: list[JobSpec],
        *,
        after: Sequence[str] = (),
        new_group: bool = False,
        group: str | None = None,
        max_running: int | None = None,
        key: str | None = None,
        key_ttl_s: float | None = None,
        key_part: int = 0,
    ) -> tuple[list[str], str | None]:
        """One submit request (keep it under CHUNK_BYTES): the jobs' ids and their group."""
        message = submits.message(specs, after, new_group, group, max_running, (key, key_ttl_s, key_part))
        reply = await self.connection.request(message)
        return list(reply.job_ids), reply.group

    # ---- task calls and results (what handles and mapping ask the client for) ---------------------------------

    async def task_call(self, name: str, payload: bytes, *, records: int | None = None) -> TaskCall:
        """The call of task `name` on its encoded arguments or records, uploaded as a blob if large."""
        return await blobs.task_call(self.connection, name, payload, records=records)

    async def download(self, blob: str) -> bytes:
        """The content of a blob (a large task result), checked against its id."""
        return await blobs.download(self.connection, blob)

    async def results(self, job_ids: Sequence[str]) -> list[TaskOutcome]:
        """The recorded results of task jobs, in order (several requests if they are large)."""
        outcomes: list[TaskOutcome] = []
        while len(outcomes) < len(job_ids):
            rest = list(job_ids[len(outcomes) :])
            reply = await self.connection.request(lambda rid: ReadResults(rid=rid, job_ids=rest))  # noqa: B023
            outcomes.extend(reply.results)
        return outcomes

    async def next_results(self, job_ids: Sequence[str]) -> list[TaskOutcome]:
        """Once at least one of the jobs has finished: the results of those that have (a long poll)."""
        reply = await self.connection.request(lambda rid: ReadResults(rid=rid, job_ids=list(job_ids), wait_any=True))
        return list(reply.results)

    # ---- inspecting and controlling jobs ----------------------------------------------------------------------

    async def show(self, job_id: str) -> tuple[JobView, list[AttemptView]]:
        """A job and its finished attempts; UnknownJob if there is none."""
        reply = await self.connection.request(lambda rid: ShowJob(rid=rid, job_id=job_id))
        return reply.job, reply.attempts

    async def why(self, job_id: str) -> JobExplained:
        """Why the job is not running (or where it runs, or how it ended); UnknownJob if there is none."""
        reply: JobExplained = await self.connection.request(lambda rid: ExplainJob(rid=rid, job_id=job_id))
        return reply

    async def jobs(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        limit: int = 1000,
        before: str | None = None,
        group: str | None = None,
    ) -> list[JobView]:
        """The most recently submitted jobs first (limit 0: all); `before` pages back from a job id.

        The broker answers at most MAX_LIST_ROWS a request, and at most LIST_REPLY_BYTES of them; more
        are fetched page by page."""
        jobs: list[JobView] = []
        while True:
            want = MAX_LIST_ROWS if limit == 0 else min(limit - len(jobs), MAX_LIST_ROWS)
            reply = await self.connection.request(
                lambda rid: ListJobs(rid=rid, state=state, queue=queue, limit=want, before=before, group=group)  # noqa: B023
            )
            jobs.extend(reply.jobs)
            # A page cut by its size says `more`; one cut by `want` is full; a short one is the end.
            if not reply.jobs or (len(reply.jobs) < want and not reply.more) or (limit and len(jobs) >= limit):
                return jobs
            before = reply.jobs[-1].id

    async def output(self, job_id: str, stream: str = "stdout") -> tuple[bytes, bool]:
        """A job's captured stdout or stderr, and whether it was truncated."""
        reply = await self.connection.request(lambda rid: ReadOutput(rid=rid, job_id=job_id, stream=stream))
        return reply.data, reply.truncated

    async def control(self, action: str, job_ids: Sequence[str]) -> list[Outcome]:
        """cancel/retry/hold/release each job; one Outcome per job (code 0: done)."""
        reply = await self.connection.request(lambda rid: ControlJobs(rid=rid, action=action, job_ids=list(job_ids)))
        return list(reply.outcomes)

    async def cancel(self, job_id: str) -> None:
        await self._control_one("cancel", job_id)

    async def retry(self, job_id: str) -> None:
        await self._control_one("retry", job_id)

    async def hold(self, job_id: str) -> None:
        await self._control_one("hold", job_id)

    async def release(self, job_id: str) -> None:
        await self._control_one("release", job_id)

    async def _control_one(self, action: str, job_id: str) -> None:
        (outcome,) = await self.control(action, [job_id])
        if outcome.code:
            raise exception_for(outcome.code, outcome.message)

    async def wait(self, job_ids: Sequence[str], *, any_: bool = False) -> list[JobView]:
        """Return the jobs once every one has finished (`any_`: once one has, the finished ones)."""
        reply = await self.connection.request(lambda rid: WaitJobs(rid=rid, job_ids=list(job_ids), any=any_))
        return list(reply.jobs)

    async def workers(self) -> list[WorkerView]:
        reply = await self.connection.request(lambda rid: ListWorkers(rid=rid))
        return list(reply.workers)

    async def purge(self, older_than_s: float | None = None) -> int:
        """Remove finished jobs older than `older_than_s` (None: the broker's --keep); returns how many."""
        reply = await self.connection.request(lambda rid: PurgeJobs(rid=rid, older_than_s=older_than_s))
        return int(reply.purged)

    # ---- tokens (an admin credential) -------------------------------------------------------------------------

    async def create_token(
        self, name: str, role: str, *, queues: Sequence[str] = (), expires_s: float | None = None
    ) -> tuple[str, TokenView]:
        """A new credential for `role` (admin, submit, worker, read), limited to `queues` if given, refused
        after `expires_s`; returns the credential string to hand out (shown only now) and the token."""
        reply = await self.connection.request(
            lambda rid: CreateToken(rid=rid, name=name, role=role, queues=list(queues), expires_s=expires_s)
        )
        return reply.credential, reply.token

    async def tokens(self) -> list[TokenView]:
        """Every token: name, role, queues, when made, last used, expires and revoked (never a secret)."""
        reply = await self.connection.request(lambda rid: ListTokens(rid=rid))
        return list(reply.tokens)

    async def revoke_token(self, name: str) -> tuple[TokenView, int]:
        """Refuse the token from now on; returns it and how many open connections of it were closed."""
        reply = await self.connection.request(lambda rid: RevokeToken(rid=rid, name=name))
        return reply.token, int(reply.closed)

    # ---- the grid as a whole: status, accounting, events ------------------------------------------------------

    async def status(self) -> StatusReported:
        return await self.connection.request(lambda rid: GetStatus(rid=rid))

    async def report(self, since_ms: int = 0, by: str = "owner") -> list[ReportRow]:
        """Accounting per owner, queue or worker of the attempts that ended since `since_ms`."""
        reply = await self.connection.request(lambda rid: GetReport(rid=rid, since_ms=since_ms, by=by))
        return list(reply.rows)

    async def subscribe(self) -> tuple[Subscribed, AsyncIterator[Event]]:
        """The grid now (jobs per queue and state, workers) and every event after it, in order.

        The iterator ends by raising why the stream ended: ConnectionLost, or SlowConsumer if this
        client fell too far behind and the broker dropped it (subscribe again to resync).
        """
        snapshot = await self.connection.request(lambda rid: Subscribe(rid=rid))
        return snapshot, self._events()

    async def follow_output(self, job_id: str) -> AsyncIterator[OutputChunk]:
        """What the job's attempts write while they run, as they write it (best effort: chunks may be
        missing; the recorded output, by offset, is complete). Ends when the connection closes."""
        await self.connection.request(lambda rid: FollowOutput(rid=rid, job_id=job_id))
        async for message in self.connection.pushes:
            if isinstance(message, OutputChunks):
                for chunk in message.chunks:
                    yield chunk

    async def follow_events(self) -> AsyncIterator[Event]:
        """Every event from now on (see subscribe)."""
        _, events = await self.subscribe()
        async for event in events:
            yield event

    async def _events(self) -> AsyncIterator[Event]:
        async for message in self.connection.pushes:
            if isinstance(message, EventBatch):
                for event in message.events:
                    yield event
            elif isinstance(message, Event):
                yield message
        raise self.connection.closed_error()

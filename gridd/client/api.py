"""The Python API: `async with connect(address, token) as client`, then submit, inspect, control, wait,
and run Python tasks (`submit_task`, `map`). `gridd.connect_sync` is the same client for code that is
not async (client/sync.py).

Used as it is by the CLI, the TUI, the worker and user programs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import msgspec

from gridd.client import blobs, mapping
from gridd.client.connection import Connection, open_connection
from gridd.client.handles import JobHandle, TaskHandle
from gridd.client.locate import resolve
from gridd.client.tasks import Task
from gridd.protocol.bundles import ref_problem
from gridd.protocol.errors import InvalidRequest, PayloadTooLarge, exception_for
from gridd.protocol.limits import spec_too_large
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
    TaskOutcome,
    TokenView,
    WaitJobs,
    WorkerView,
)

R = TypeVar("R")

# Many jobs travel in chunks so that no submit frame nears the frame limit (16 MiB).
CHUNK_BYTES = 4 * 1024 * 1024
_size = msgspec.msgpack.Encoder()


class Client:
    """A connected client. Create it with `connect(...)`."""

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
    ) -> str:
        """Submit one command; returns its id once the job is durable. It runs on a worker with `cpus`
        and `memory_mb` (MiB) free for it, and every tag of `requires`. `bundle` ("NAME" or "NAME@N"):
        run it inside that bundle (gridd bundle push); "NAME" is its latest version at submit."""
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
        )
        return (await self.submit_many([spec], after=after))[0]

    async def submit_many(self, specs: Sequence[JobSpec], *, after: Sequence[str] = ()) -> list[str]:
        """Submit many jobs; returns their ids in order, once every one is durable."""
        ids, _ = await self._submit(specs, after=after, new_group=False, max_running=None)
        return ids

    async def submit_group(
        self, specs: Sequence[JobSpec], *, after: Sequence[str] = (), max_running: int | None = None
    ) -> tuple[list[str], str]:
        """Submit jobs as one group (at most `max_running` of them running at once); returns their ids
        in order and the group's id, which names all of them wherever a job id is taken."""
        ids, group = await self._submit(specs, after=after, new_group=True, max_running=max_running)
        assert group is not None  # noqa: S101 - the broker always names a new group
        return ids, group

    async def _submit(
        self, specs: Sequence[JobSpec], *, after: Sequence[str], new_group: bool, max_running: int | None
    ) -> tuple[list[str], str | None]:
        for problem in {ref_problem(s.bundle) for s in specs if s.bundle is not None} - {None}:
            raise InvalidRequest(str(problem))  # else the broker would close the connection on decoding it
        self._check_sizes(specs)
        ids: list[str] = []
        group: str | None = None
        for chunk in _chunks(specs):
            first = group is None
            chunk_ids, group = await self.submit_chunk(
                chunk,
                after=after,
                new_group=new_group and first,
                group=None if first else group,
                max_running=max_running if first else None,
            )
            ids.extend(chunk_ids)
        return ids, group

    def _check_sizes(self, specs: Sequence[JobSpec]) -> None:
        """Refuse early what the broker would refuse (its limits came with its welcome; 0: not said), so a
        spec too large for a frame is never sent. The broker checks again."""
        welcome = self.connection.welcome
        max_command = welcome.max_command_bytes or 2**62
        max_stdin = welcome.max_stdin_bytes or 2**62
        for number, spec in enumerate(specs, start=1):
            whose = f"job {number} of {len(specs)}: its" if len(specs) > 1 else "the job's"
            problem = spec_too_large(spec, max_command, max_stdin, whose)
            if problem is not None:
                raise PayloadTooLarge(f"{problem}; nothing was submitted")

    async def submit_chunk(
        self,
        specs: list[JobSpec],
        *,
        after: Sequence[str] = (),
        new_group: bool = False,
        group: str | None = None,
        max_running: int | None = None,
    ) -> tuple[list[str], str | None]:
        """One submit request (keep it under CHUNK_BYTES): the jobs' ids and their group."""
        reply = await self.connection.request(_submit_message(specs, after, new_group, group, max_running))
        return list(reply.job_ids), reply.group

    # ---- Python tasks ------------------------------------------------------------------------------------------

    async def submit_task(self, task: Task[Any, R], /, *args: Any, **kwargs: Any) -> TaskHandle[R]:
        """Call `task(*args, **kwargs)` on the grid; the arguments are checked here first (BadArguments)."""
        call = await blobs.task_call(self.connection, task.name, task.encode_call(args, kwargs))
        (job_id,) = await self.submit_many([task.spec(call)])
        return TaskHandle(self, job_id, task)

    def map(
        self, task: Task[Any, Any], records: Iterable[Any], *, batch: int = 100, ordered: bool = True
    ) -> AsyncIterator[Any]:
        """Run `task` over `records` in jobs of `batch` records; one result per record, in input order
        (`ordered=False`: as jobs complete). A failed job raises TaskFailed/JobFailed and cancels the
        rest, as does leaving the loop early."""
        return mapping.map_task(self, task, records, batch=batch, ordered=ordered)

    def as_completed(self, job_ids: Sequence[str]) -> AsyncIterator[JobView]:
        """Each job once it has finished, in the order they finish."""
        return mapping.as_completed(self, job_ids)

    def handle(self, job_id: str, task: Task[Any, Any] | None = None) -> JobHandle:
        """A handle on a job submitted earlier (a task's, to decode its result, when `task` is given)."""
        return TaskHandle(self, job_id, task) if task is not None else JobHandle(self, job_id)

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

    # ---- tokens (an admin credential) -----------------------------------------------------------------------

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

    async def status(self) -> StatusReported:
        return await self.connection.request(lambda rid: GetStatus(rid=rid))  # type: ignore[no-any-return]

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


@asynccontextmanager
async def connect(
    address: str | None = None, token: str | None = None, *, name: str | None = None, insecure: bool | None = None
) -> AsyncIterator[Client]:
    """Connect to the broker at HOST:PORT with a credential (`gridd1-...`, or the plain cluster secret).
    Without them: GRIDD_BROKER and GRIDD_TOKEN, else the login file's, else the local broker's (as the CLI
    finds them). TLS unless `insecure` (None: GRIDD_INSECURE or the config file says)."""
    address, token, insecure = resolve(address, token, insecure)
    async with open_connection(address, token, role="client", name=name, insecure=insecure) as connection:
        yield Client(connection)


def _submit_message(
    jobs: list[JobSpec], after: Sequence[str], new_group: bool, group: str | None, max_running: int | None
) -> Callable[[int], SubmitJobs]:
    def build(rid: int) -> SubmitJobs:
        return SubmitJobs(
            rid=rid, jobs=jobs, after=list(after), new_group=new_group, group=group, max_running=max_running
        )

    return build


def _chunks(specs: Sequence[JobSpec]) -> list[list[JobSpec]]:
    """Consecutive runs of specs whose encoded size stays under CHUNK_BYTES (at least one each)."""
    chunks: list[list[JobSpec]] = [[]]
    size = 0
    for spec in specs:
        n = len(_size.encode(spec))
        if chunks[-1] and size + n > CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(spec)
        size += n
    return chunks

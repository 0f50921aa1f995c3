"""One peer's connection to the broker: handshake, authentication, request dispatch, replies.

Rules: this is the broker's one place that joins bytes and messages. Nothing is trusted from the
network: the decoder checks every frame's size before buffering it and validates it on decode; a peer
that breaks the wire rules gets an Error frame and its connection closed, and nobody else notices.
A refused request is answered with an Error for its rid and the connection stays open. Long polls
(wait, lease requests, event subscriptions) run as tasks of the session, so one connection can carry
many requests at once. Replies go through a bounded outbox drained by one writer task, which writes
everything queued in one send.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import msgspec
import structlog
from anyio.abc import ByteStream, SocketAttribute, TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from gridd import __version__
from gridd.broker import authorization
from gridd.broker.admission import ConnectionLimits
from gridd.broker.core import Broker
from gridd.broker.credentials import Credentials
from gridd.broker.principals import Principal
from gridd.broker.workers import WorkerLink
from gridd.protocol.errors import (
    AuthFailed,
    BadFrame,
    ConnectionLost,
    ErrorCode,
    Forbidden,
    GriddError,
    InvalidRequest,
    NotAWorker,
    OperationRefused,
    ProtocolError,
    SlowConsumer,
    StorageFailed,
    UnsupportedVersion,
)
from gridd.protocol.frames import MAX_FRAME_BYTES, FrameDecoder, encode_frames
from gridd.protocol.messages import (
    MAX_LIST_ROWS,
    REPORT_BY,
    AppendOutput,
    BlobRead,
    BlobStored,
    BundleFile,
    BundleGot,
    BundlePushed,
    BundlesListed,
    CompleteJobs,
    ControlJobs,
    CreateToken,
    Error,
    EventBatch,
    ExplainJob,
    FollowOutput,
    GetBlob,
    GetBundle,
    GetReport,
    GetStatus,
    Hello,
    JobsAccepted,
    JobsCompleted,
    JobsControlled,
    JobsFinished,
    JobShown,
    JobsLeased,
    JobsListed,
    JobsPurged,
    LeasesRenewed,
    LeasesReturned,
    ListBundles,
    ListJobs,
    ListTokens,
    ListWorkers,
    Message,
    OutputChunks,
    OutputFollowed,
    OutputRead,
    PeerMessage,
    Ping,
    Pong,
    PurgeJobs,
    PushBundle,
    PutBlob,
    ReadOutput,
    ReadResults,
    RegisterWorker,
    RenewLeases,
    ReportReady,
    ReportWorkerState,
    RequestJobs,
    ResultsRead,
    ReturnLeases,
    RevokeToken,
    ShowJob,
    StatusReported,
    SubmitJobs,
    Subscribe,
    Subscribed,
    TokenCreated,
    TokenRevoked,
    TokensListed,
    WaitJobs,
    Welcome,
    WorkerRegistered,
    WorkersListed,
)
from gridd.protocol.version import PROTOCOL_VERSION

log = structlog.get_logger()

M = TypeVar("M")

HANDSHAKE_FRAME_BYTES = 64 * 1024
# Small enough that the outbox (OUTBOX_FRAMES) bounds what a slow subscriber's socket backs up.
EVENTS_PER_FRAME = 64
RESULTS_PER_REPLY_BYTES = 8 * 1024 * 1024  # a ResultsRead stays well under the frame limit
FLUSH_S = 5.0
OUTBOX_FRAMES = 1024
READ_BYTES = 65536
_TRANSPORT_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class Session:
    """Serves one connection from accept to close."""

    def __init__(
        self,
        stream: ByteStream,
        broker: Broker,
        credentials: Credentials,
        limits: ConnectionLimits | None = None,
        *,
        on_authenticated: Callable[[], None] | None = None,
    ) -> None:
        self._stream = stream
        self._broker = broker
        self._credentials = credentials
        self._limits = limits or ConnectionLimits()
        self._on_authenticated = on_authenticated
        self._polls = 0  # long polls in flight: while one is, a silent client is waiting, not idle
        # Until the peer has authenticated, only small frames: Hello is tiny, so neither
        # garbage that looks like a long frame nor a stranger can make the broker buffer 16 MiB.
        self._decoder: FrameDecoder[Any] = FrameDecoder(PeerMessage, HANDSHAKE_FRAME_BYTES)
        self._pending: list[Any] = []
        self._outbox: MemoryObjectSendStream[Message]
        self._worker: WorkerLink | None = None
        self._hello_name = ""
        # A worker token's fetchable inputs, for the set of jobs it held when they were read.
        self._inputs: tuple[frozenset[str], set[str], set[str]] | None = None
        self.principal: Principal | None = None  # who the peer speaks for, once it has authenticated
        self._serving = anyio.CancelScope()  # cancelled to end the session once the outbox is flushed
        self._flush_by = math.inf  # when the writer must give up sending what is queued
        self.peer = _peer_name(stream)

    async def run(self) -> None:
        with structlog.contextvars.bound_contextvars(peer=self.peer):
            try:
                hello = await self._handshake()
            except ProtocolError as exc:
                await self._send_final(Error(rid=None, code=exc.code, message=str(exc)))
                log.warning("conn.refused", code=int(exc.code), error=str(exc))
                return
            except AuthFailed as exc:
                await self._send_final(Error(rid=None, code=exc.code, message=str(exc)))
                log.warning("auth.failed", error=str(exc))
                return
            except ConnectionLost:
                return
            except TimeoutError:
                log.debug("conn.handshake_timeout", timeout_s=self._limits.handshake_timeout_s)
                return
            if self._on_authenticated is not None:
                self._on_authenticated()
            self._decoder.max_frame_bytes = MAX_FRAME_BYTES
            self._hello_name = hello.name
            log.debug("conn.opened", role=hello.role, name=hello.name)
            tx, rx = anyio.create_memory_object_stream[Message](OUTBOX_FRAMES)
            self._outbox = tx
            assert self.principal is not None  # noqa: S101 - the handshake set it
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._write, rx)
                    with tx, self._broker.sessions.hold(self.principal, self._close_for_token):
                        async with anyio.create_task_group() as polls:
                            with self._serving:
                                await self._serve(polls)
                            polls.cancel_scope.cancel()
                    # The outbox is closed: the writer sends what is queued (a last Error frame, say)
                    # and ends; a peer that reads nothing gets FLUSH_S, then the connection is aborted
                    # (the listener closes the stream, unsent bytes and all).
                    tg.cancel_scope.deadline = min(self._flush_by, anyio.current_time() + FLUSH_S)
            finally:
                if self._worker is not None:
                    self._broker.unregister_worker(self._worker)
                log.debug("conn.closed")

    # ---- I/O ----------------------------------------------------------------------------------------------

    async def _receive(self) -> list[Any]:
        """The next messages: at least one, from as few reads as the bytes allow."""
        while not self._pending:
            try:
                data = await self._stream.receive(READ_BYTES)
            except _TRANSPORT_ERRORS as exc:
                raise ConnectionLost(f"peer {self.peer} went away") from exc
            self._pending = self._decoder.feed(data)
        messages, self._pending = self._pending, []
        return messages

    async def _write(self, rx: MemoryObjectReceiveStream[Message]) -> None:
        with rx:
            async for first in rx:
                batch = [first]
                while True:
                    try:
                        batch.append(rx.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                try:
                    await self._stream.send(encode_frames(batch))
                except _TRANSPORT_ERRORS:
                    return

    async def _send_final(self, message: Message) -> None:
        with anyio.move_on_after(2):
            with contextlib.suppress(*_TRANSPORT_ERRORS):
                await self._stream.send(encode_frames([message]))
        await self._stream.aclose()

    # ---- handshake ----------------------------------------------------------------------------------------

    async def _handshake(self) -> Hello:
        with anyio.fail_after(self._limits.handshake_timeout_s):
            hello = await self._expect(Hello)
            if hello.version != PROTOCOL_VERSION:
                raise UnsupportedVersion(f"peer speaks protocol {hello.version}; this broker speaks {PROTOCOL_VERSION}")
            principal = await self._credentials.authenticate(hello.secret)
            if principal is None:
                raise AuthFailed("authentication failed: the broker knows no such credential (GRIDD_TOKEN)")
            self.principal = principal
            settings = self._broker.settings
            await self._stream.send(
                encode_frames(
                    [
                        Welcome(
                            broker_version=__version__,
                            lease_ttl_s=settings.lease_ttl_ms / 1000,
                            heartbeat_s=settings.heartbeat_s,
                            idle_timeout_s=self._limits.idle_timeout_s,
                            max_command_bytes=settings.max_command_bytes,
                            max_stdin_bytes=settings.max_stdin_bytes,
                        )
                    ]
                )
            )
        return hello

    async def _expect(self, kind: type[M]) -> M:
        messages = await self._receive()
        first, self._pending = messages[0], messages[1:]
        if not isinstance(first, kind):
            raise BadFrame(f"expected {kind.__name__} during the handshake, got {type(first).__name__}")
        return first

    # ---- requests -----------------------------------------------------------------------------------------

    async def _serve(self, tg: TaskGroup) -> None:
        while True:
            try:
                for message in await self._receive_with_liveness():
                    await self._dispatch(message, tg)
            except ProtocolError as exc:
                log.warning("conn.bad_frame", code=int(exc.code), error=str(exc))
                await self._outbox.send(Error(rid=None, code=exc.code, message=str(exc)))
                return
            except TimeoutError:
                if self._worker is not None:
                    log.warning("worker.silent", heartbeat_s=self._broker.settings.heartbeat_s)
                else:
                    log.info("conn.idle_closed", idle_timeout_s=self._limits.idle_timeout_s)
                return
            except ConnectionLost:
                return

    async def _receive_with_liveness(self) -> list[Any]:
        """The next messages; TimeoutError when the peer has gone quiet for too long.

        A worker heart-beats every heartbeat_s: silence for three of them means it is gone. A client
        may be silent while a long poll of its own is in flight (`gridd wait`, `events`, the TUI), and
        otherwise for idle_timeout_s (gridd's client sends Ping when it has sent nothing for a third of
        that); a connection left open and unused past it is closed.
        """
        if self._worker is not None:
            with anyio.fail_after(self._broker.settings.heartbeat_s * 3):
                return await self._receive()
        while True:
            with anyio.move_on_after(self._limits.idle_timeout_s):
                return await self._receive()
            if not self._polls:
                raise TimeoutError

    def _start_poll(self, tg: TaskGroup, poll: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run a long poll as a task of the session, counted while it is in flight."""

        async def counted() -> None:
            self._polls += 1
            try:
                await poll(*args)
            finally:
                self._polls -= 1

        tg.start_soon(counted)

    async def _dispatch(self, message: Any, tg: TaskGroup) -> None:
        b, who = self._broker, self.principal
        assert who is not None  # noqa: S101 - the handshake set it
        try:
            authorization.check(who, message)  # the role; ownership, queues and leases are checked below
        except Forbidden as exc:
            await self._refuse(message, exc)
            return
        match message:
            case SubmitJobs(rid=rid):
                await self._answer(rid, lambda: self._submit(message))
            case ShowJob(rid=rid, job_id=job_id):
                await self._answer(rid, lambda: self._show(rid, job_id))
            case ExplainJob(rid=rid, job_id=job_id):
                await self._answer(rid, lambda: self._explain(rid, job_id))
            case ListJobs(rid=rid, state=state, queue=queue, limit=limit, before=before, group=group):
                rows = min(limit or MAX_LIST_ROWS, MAX_LIST_ROWS)  # and LIST_REPLY_BYTES: far below the frame limit
                await self._answer(rid, lambda: self._list_jobs(rid, state, queue, rows, before, group))
            case ReadOutput(rid=rid, job_id=job_id, stream=stream):
                await self._answer(rid, lambda: self._read_output(rid, job_id, stream))
            case ControlJobs(rid=rid, action=action, job_ids=job_ids):
                await self._answer(rid, lambda: self._control(rid, action, job_ids))
            case WaitJobs(rid=rid, job_ids=job_ids, any=any_):
                self._start_poll(tg, self._answer, rid, lambda: self._wait(rid, job_ids, any_))
            case ReadResults(rid=rid, job_ids=job_ids, wait_any=wait_any):
                if wait_any:  # a long poll: it must not hold up this connection's other requests
                    self._start_poll(tg, self._answer, rid, lambda: self._results(rid, job_ids, wait_any))
                else:
                    await self._answer(rid, lambda: self._results(rid, job_ids, wait_any))
            case PutBlob(rid=rid, blob=blob, size=size, offset=offset, data=data):
                await self._answer(rid, lambda: _reply(BlobStored, rid, have=b.put_blob(blob, size, offset, data)))
            case GetBlob(rid=rid, blob=blob, offset=offset):
                await self._answer(rid, lambda: self._get_blob(rid, blob, offset))
            case PushBundle() | ListBundles() | GetBundle():
                await self._dispatch_bundle(message)
            case ListWorkers(rid=rid):
                self._outbox.send_nowait(WorkersListed(rid=rid, workers=b.worker_views()))
            case GetStatus(rid=rid):
                await self._answer(rid, lambda: self._status(rid))
            case GetReport(rid=rid, since_ms=since_ms, by=by):
                await self._answer(rid, lambda: self._report(rid, since_ms, by))
            case PurgeJobs(rid=rid, older_than_s=older_than_s):
                await self._answer(rid, lambda: self._purge(rid, older_than_s))
            case Subscribe(rid=rid):
                self._start_poll(tg, self._follow_events, rid)
            case FollowOutput(rid=rid, job_id=job_id):
                self._start_poll(tg, self._follow_output, rid, job_id)
            case Ping(rid=rid):
                await self._outbox.send(Pong(rid=rid))
            case AppendOutput(chunks=chunks):
                if self._worker is not None:  # no reply either way: it is a best-effort push
                    b.outputs.relay([c for c in chunks if c.job_id in self._worker.jobs])
            case RegisterWorker():
                await self._answer(message.rid, lambda: self._register(message))
            case ReportWorkerState(state=state, accepting=accepting):
                if self._worker is None:
                    raise BadFrame("a worker state from a connection that has not registered as a worker")
                b.set_worker_state(self._worker, state, accepting)
            case RequestJobs() | RenewLeases() | CompleteJobs() | ReturnLeases():
                await self._dispatch_worker(message, tg)
            case CreateToken() | ListTokens() | RevokeToken():
                await self._answer(message.rid, lambda: self._tokens(message))
            case _:
                raise BadFrame(f"unexpected {type(message).__name__} after the handshake")

    async def _refuse(self, message: Any, exc: Forbidden) -> None:
        """A request the principal's role may not make: an Error for its rid; the connection stays open.
        A push (no rid: output, a worker state) has no reply to refuse it with: it is dropped."""
        rid = getattr(message, "rid", None)
        log.warning("request.forbidden", op=type(message).__name__, rid=rid, error=str(exc))
        if rid is not None:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self._outbox.send(Error(rid=rid, code=exc.code, message=str(exc)))

    def _close_for_token(self, why: str) -> None:
        """Its token was revoked or has expired: say so (after what is queued) and end the session."""
        exc = AuthFailed(f"{why}: the broker closed this connection")
        log.info("conn.token_closed", reason=why)
        self._flush_by = anyio.current_time() + FLUSH_S
        with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._outbox.send_nowait(Error(rid=None, code=exc.code, message=str(exc)))
        self._serving.cancel()

    @property
    def _who(self) -> Principal:
        assert self.principal is not None  # noqa: S101 - only asked once the handshake set it
        return self.principal

    async def _check_owned(self, refs: Sequence[str], what: str) -> None:
        """A submit token acts only on its own jobs: Forbidden naming the first job (or group) of another."""
        owner = authorization.owner_filter(self._who)
        if owner is None or not refs:
            return
        found = await self._broker.store.foreign_job(refs, owner)
        if found is not None:
            ref, other = found
            raise authorization.refusal(self._who, f"{what} {authorization.job_ref(ref)}", f"it belongs to {other!r}")

    async def _check_leased(self, kind: str, item: str) -> None:
        """A worker token fetches only what the jobs leased to it now read (their bundle, their blobs)."""
        if self._who.role != "worker":
            return
        jobs = frozenset(self._worker.jobs) if self._worker is not None else frozenset()
        if self._inputs is None or self._inputs[0] != jobs:
            refs, blobs = await self._broker.store.job_inputs(sorted(jobs)) if jobs else (set(), set())
            self._inputs = (jobs, refs, blobs)
        if item not in (self._inputs[1] if kind == "bundle" else self._inputs[2]):
            shown = item if kind == "bundle" else item[:12]
            raise authorization.refusal(self._who, f"fetch {kind} {shown}", "no job leased to it reads it")

    async def _tokens(self, message: CreateToken | ListTokens | RevokeToken) -> Message:
        b = self._broker
        match message:
            case CreateToken(rid=rid, name=name, role=role, queues=queues, expires_s=expires_s):
                credential, view = await b.create_token(name, role, queues, expires_s)
                return TokenCreated(rid=rid, credential=credential, token=view)
            case ListTokens(rid=rid):
                return TokensListed(rid=rid, tokens=await b.store.list_tokens())
            case RevokeToken(rid=rid, name=name):
                view, closed = await b.revoke_token(name)
                return TokenRevoked(rid=rid, token=view, closed=closed)
        raise BadFrame(f"unexpected {type(message).__name__}")  # unreachable: the match is exhaustive

    async def _answer(self, rid: int, handler: Callable[[], Awaitable[Message]]) -> None:
        """Run a request and send its reply, or an Error for its rid if it was refused."""
        try:
            reply = await handler()
        except (OperationRefused, StorageFailed) as exc:
            reply = Error(rid=rid, code=exc.code, message=str(exc))
        except GriddError as exc:
            log.error("request.failed", rid=rid, error=str(exc))
            reply = Error(rid=rid, code=exc.code, message=str(exc))
        except Exception as exc:  # a bug of ours: this request fails, the connection and broker go on
            log.exception("request.crashed", rid=rid)
            reply = Error(rid=rid, code=ErrorCode.INTERNAL, message=f"internal error: {type(exc).__name__}: {exc}")
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self._outbox.send(reply)

    async def _dispatch_worker(
        self, message: RequestJobs | RenewLeases | CompleteJobs | ReturnLeases, tg: TaskGroup
    ) -> None:
        """A worker's requests; refused on a connection that did not register as a worker."""
        b, link, rid = self._broker, self._worker, message.rid
        if link is None:
            exc = NotAWorker("this connection has not registered as a worker")
            await self._outbox.send(Error(rid=rid, code=exc.code, message=str(exc)))
            return
        match message:
            case RequestJobs(max_jobs=n, cpus=cpus, memory_mb=mb):  # a long poll: must not hold up the others
                self._start_poll(
                    tg, self._answer, rid, lambda: _reply(JobsLeased, rid, jobs=b.lease(link, n, cpus, mb))
                )
            case RenewLeases(leases=leases):
                await self._answer(rid, lambda: self._renew(rid, link, leases))
            case CompleteJobs(results=results):
                await self._answer(rid, lambda: _reply(JobsCompleted, rid, outcomes=b.complete(link, results)))
            case ReturnLeases(leases=leases):
                await self._answer(rid, lambda: self._return(rid, link, leases))

    async def _dispatch_bundle(self, message: PushBundle | ListBundles | GetBundle) -> None:
        store = self._broker.store
        match message:
            case PushBundle(rid=rid, name=name, files=files):
                await self._answer(rid, lambda: self._push_bundle(rid, name, files))
            case ListBundles(rid=rid, name=only):
                await self._answer(rid, lambda: _reply(BundlesListed, rid, bundles=store.list_bundles(only)))
            case GetBundle(rid=rid, ref=ref):
                await self._answer(rid, lambda: self._get_bundle(rid, ref))

    async def _push_bundle(self, rid: int, name: str, files: list[BundleFile]) -> Message:
        version, created, missing, digest = await self._broker.push_bundle(name, files)
        return BundlePushed(rid=rid, version=version, created=created, missing=missing, digest=digest)

    async def _get_bundle(self, rid: int, ref: str) -> Message:
        await self._check_leased("bundle", ref)
        view, files = await self._broker.store.get_bundle(ref)
        return BundleGot(rid=rid, bundle=view, files=files)

    async def _submit(self, m: SubmitJobs) -> Message:
        who = self._who
        authorization.check_queues(who, m.jobs)
        await self._check_owned(m.after, "wait for")  # --after: depends on its own jobs only
        await self._check_owned([m.group] if m.group else [], "add jobs to")
        ids, group = await self._broker.submit(
            m.jobs, after=m.after, new_group=m.new_group, group=m.group, max_running=m.max_running, owner=who.name
        )
        return JobsAccepted(rid=m.rid, job_ids=ids, group=group)

    async def _show(self, rid: int, job_id: str) -> Message:
        job, attempts = await self._broker.show(job_id)
        owner = authorization.owner_filter(self._who)
        if owner is not None and job.owner != owner:
            raise authorization.refusal(self._who, f"show job {job_id}", f"it belongs to {job.owner!r}")
        return JobShown(rid=rid, job=authorization.visible(self._who, job), attempts=attempts)

    async def _report(self, rid: int, since_ms: int, by: str) -> Message:
        if by not in REPORT_BY:
            raise InvalidRequest(f"a report is by {', '.join(REPORT_BY)}, not {by!r}")
        owner = authorization.owner_filter(self._who)  # a submit token: its own jobs only
        rows = await self._broker.store.report(by, since_ms, owner)
        return ReportReady(rid=rid, by=by, since_ms=since_ms, rows=rows)

    async def _explain(self, rid: int, job_id: str) -> Message:
        explained = await self._broker.explain(job_id)
        owner = authorization.owner_filter(self._who)
        if owner is not None and explained.job.owner != owner:
            raise authorization.refusal(self._who, f"explain job {job_id}", f"it belongs to {explained.job.owner!r}")
        return msgspec.structs.replace(explained, rid=rid, job=authorization.visible(self._who, explained.job))

    async def _list_jobs(
        self, rid: int, state: str | None, queue: str | None, rows: int, before: str | None, group: str | None
    ) -> Message:
        owner = authorization.owner_filter(self._who)  # a submit token lists its own jobs only
        jobs, more = await self._broker.store.list_jobs(state, queue, rows, before, group, owner)
        return JobsListed(rid=rid, jobs=[authorization.visible(self._who, j) for j in jobs], more=more)

    async def _control(self, rid: int, action: str, job_ids: list[str]) -> Message:
        await self._check_owned(job_ids, action)
        return JobsControlled(rid=rid, outcomes=await self._broker.control(action, job_ids))

    async def _wait(self, rid: int, job_ids: list[str], any_: bool) -> Message:
        await self._check_owned(job_ids, "wait for")
        jobs = await self._broker.wait(job_ids, any_=any_)
        return JobsFinished(rid=rid, jobs=[authorization.visible(self._who, j) for j in jobs])

    async def _results(self, rid: int, job_ids: list[str], wait_any: bool) -> Message:
        await self._check_owned(job_ids, "read the results of")
        results = await self._broker.results(job_ids, RESULTS_PER_REPLY_BYTES, wait_any=wait_any)
        return ResultsRead(rid=rid, results=results)

    async def _read_output(self, rid: int, job_id: str, stream: str) -> Message:
        if stream not in ("stdout", "stderr"):
            raise BadFrame(f"unknown output stream {stream!r}")
        await self._check_owned([job_id], "read the output of")
        data, truncated = await self._broker.store.read_output(job_id, stream)
        return OutputRead(rid=rid, data=data, truncated=truncated)

    async def _get_blob(self, rid: int, blob: str, offset: int) -> Message:
        await self._check_leased("blob", blob)
        size, data = await self._broker.store.get_blob(blob, offset)
        return BlobRead(rid=rid, size=size, data=data)

    async def _purge(self, rid: int, older_than_s: float | None) -> Message:
        age = None if older_than_s is None else int(older_than_s * 1000)
        purged, used = await self._broker.purge(age)
        return JobsPurged(rid=rid, purged=purged, older_than_s=used / 1000)

    async def _status(self, rid: int) -> Message:
        counts, workers, slots = self._broker.status()
        return StatusReported(rid=rid, counts=counts, workers=workers, slots=slots, running=counts.get("running", 0))

    async def _register(self, message: RegisterWorker) -> Message:
        if self._worker is not None:
            raise BadFrame("this connection has already registered as a worker")
        authorization.check_worker(self._who, self._hello_name, message)
        now = self._broker.clock.now_ms()
        outbox = self._outbox
        link = WorkerLink(
            name=self._hello_name,
            host=message.host,
            slots=message.slots,
            queues=list(message.queues),
            tags=dict(message.tags),
            tasks=list(message.tasks),
            cpus=message.cpus,
            memory_mb=message.memory_mb,
            connected_ms=now,
            last_seen_ms=now,
            push=lambda m: _push(outbox, m),
            state=message.state,
            instance=message.instance,
            credential_queues=self._who.queues if self._who.role == "worker" else (),
        )
        lost = await self._broker.register_worker(link, message.running, message.restarted)
        self._worker = link
        structlog.contextvars.bind_contextvars(worker=link.name)
        return WorkerRegistered(rid=message.rid, lost=lost)

    async def _renew(self, rid: int, link: WorkerLink, leases: Any) -> Message:
        lost, deadline = await self._broker.renew(link, leases)
        return LeasesRenewed(rid=rid, lost=lost, deadline_ms=deadline)

    async def _return(self, rid: int, link: WorkerLink, leases: Any) -> Message:
        await self._broker.return_leases(link, leases)
        return LeasesReturned(rid=rid)

    async def _follow_output(self, rid: int, job_id: str) -> None:
        try:
            await self._broker.show(job_id)  # an unknown job is refused, not followed forever
            await self._check_owned([job_id], "follow the output of")
        except OperationRefused as exc:
            await self._outbox.send(Error(rid=rid, code=exc.code, message=str(exc)))
            return
        with self._broker.outputs.follow(job_id) as chunks:
            try:
                await self._outbox.send(OutputFollowed(rid=rid))
                async for chunk in chunks:
                    batch = [chunk]
                    with contextlib.suppress(anyio.WouldBlock):
                        while len(batch) < 64:
                            batch.append(chunks.receive_nowait())
                    await self._outbox.send(OutputChunks(chunks=batch))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return

    async def _follow_events(self, rid: int) -> None:
        # Snapshot and subscription in one step (no await between): the deltas apply to exactly it.
        queues, workers = self._broker.snapshot()
        with self._broker.hub.subscribe() as subscription, anyio.CancelScope() as pumping:
            # Dropped while blocked on a full outbox (the peer reads nothing, so the writer is stuck on
            # the socket): stop waiting there, or the close below would never happen.
            subscription.on_drop = pumping.cancel
            try:
                await self._outbox.send(Subscribed(rid=rid, queues=queues, workers=workers))
                while (batch := await subscription.next_batch()) is not None:
                    for start in range(0, len(batch), EVENTS_PER_FRAME):
                        await self._outbox.send(EventBatch(events=list(batch[start : start + EVENTS_PER_FRAME])))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return
        # The hub ended our stream: we fell behind. Say so (after what is queued) and close, rather
        # than grow memory. One FLUSH_S covers both the Error and the writer's last send.
        self._flush_by = anyio.current_time() + FLUSH_S
        exc = SlowConsumer("event subscriber fell too far behind and was dropped; subscribe again")
        with anyio.move_on_after(FLUSH_S):
            await self._outbox.send(Error(rid=None, code=exc.code, message=str(exc)))
        self._serving.cancel()


async def _reply(kind: type[Any], rid: int, **fields: Awaitable[Any]) -> Message:
    """Await each field's value and build the reply message."""
    values = {name: await value for name, value in fields.items()}
    return kind(rid=rid, **values)  # type: ignore[no-any-return]


def _push(outbox: MemoryObjectSendStream[Message], message: Message) -> None:
    # If it cannot be queued, the worker learns it from its next heartbeat's reply.
    with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
        outbox.send_nowait(message)


def _peer_name(stream: ByteStream) -> str:
    try:
        address = stream.extra(SocketAttribute.remote_address)
    except Exception:  # noqa: BLE001 - a name for logs only
        return "?"
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return str(address)

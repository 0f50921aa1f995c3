"""Routing: each request of an authenticated connection to what answers it, and the reply (or an Error
for its rid) into the connection's outbox.

Rules: the role is checked first (authorization.check), for every message; a refused request is
answered with an Error for its rid and the connection stays open. Each request's reply has the type its
header names (`_answer` takes a `Request[R]` and a handler returning R), so a handler cannot answer with
the wrong message. Long polls (wait, lease requests, subscriptions, output follows) run as tasks of the
session's poll group, counted while in flight (a client waiting on one is not idle).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from gridd.broker import authorization
from gridd.broker.client_requests import ClientRequests
from gridd.broker.core import Broker
from gridd.broker.follows import follow_events, follow_output
from gridd.broker.principals import Principal
from gridd.broker.worker_requests import WorkerRequests
from gridd.protocol.errors import BadFrame, ErrorCode, Forbidden, GriddError, OperationRefused, StorageFailed
from gridd.protocol.messages import (
    AddSchedule,
    AppendOutput,
    ChangeSchedule,
    CompleteJobs,
    ControlJobs,
    CreateToken,
    Error,
    ExplainJob,
    FollowOutput,
    GetBlob,
    GetBundle,
    GetReport,
    GetStatus,
    ListBundles,
    ListJobs,
    ListSchedules,
    ListTokens,
    ListWorkers,
    Message,
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
    Reply,
    ReportWorkerState,
    Request,
    RequestJobs,
    ReturnLeases,
    RevokeToken,
    ShowJob,
    ShowSchedule,
    SubmitJobs,
    Subscribe,
    WaitJobs,
)

log = structlog.get_logger()

R = TypeVar("R", bound=Reply)


class Router:
    """One connection's requests, for the principal `who`: answered through `outbox`, long polls started
    in `tg`. `fell_behind` is awaited when the event hub dropped this connection's subscription."""

    def __init__(
        self,
        broker: Broker,
        who: Principal,
        hello_name: str,
        outbox: MemoryObjectSendStream[Message],
        tg: TaskGroup,
        fell_behind: Callable[[], Awaitable[None]],
    ) -> None:
        self._broker = broker
        self._who = who
        self._outbox = outbox
        self._tg = tg
        self._fell_behind = fell_behind
        self.polls = 0  # long polls in flight
        self.workers = WorkerRequests(broker, who, hello_name, lambda m: _push(outbox, m))
        self.clients = ClientRequests(broker, who, self.workers.leased)

    def _start_poll(self, poll: Callable[[], Awaitable[None]]) -> None:
        """Run a long poll as a task of the session, counted while it is in flight."""

        async def counted() -> None:
            self.polls += 1
            try:
                await poll()
            finally:
                self.polls -= 1

        self._tg.start_soon(counted)

    async def route(self, message: PeerMessage) -> None:
        """Route one message to what answers it; each request's reply type is its header's (base.py)."""
        try:
            authorization.check(self._who, message)  # the role; ownership, queues and leases are checked later
        except Forbidden as exc:
            await self._refuse(message, exc)
            return
        c, w = self.clients, self.workers
        match message:
            # jobs
            case SubmitJobs():
                await self._answer(message, lambda: c.submit(message))
            case ShowJob():
                await self._answer(message, lambda: c.show(message))
            case ExplainJob():
                await self._answer(message, lambda: c.explain(message))
            case ListJobs():
                await self._answer(message, lambda: c.list_jobs(message))
            case ReadOutput():
                await self._answer(message, lambda: c.read_output(message))
            case ControlJobs():
                await self._answer(message, lambda: c.control(message))
            case WaitJobs():
                self._start_poll(lambda: self._answer(message, lambda: c.wait(message)))
            case ReadResults(wait_any=True):  # a long poll: it must not hold up this connection's others
                self._start_poll(lambda: self._answer(message, lambda: c.results(message)))
            case ReadResults():
                await self._answer(message, lambda: c.results(message))
            case PurgeJobs():
                await self._answer(message, lambda: c.purge(message))
            # blobs and bundles
            case PutBlob():
                await self._answer(message, lambda: c.put_blob(message))
            case GetBlob():
                await self._answer(message, lambda: c.get_blob(message))
            case PushBundle():
                await self._answer(message, lambda: c.push_bundle(message))
            case ListBundles():
                await self._answer(message, lambda: c.list_bundles(message))
            case GetBundle():
                await self._answer(message, lambda: c.get_bundle(message))
            # the grid
            case ListWorkers():
                await self._answer(message, lambda: c.workers(message))
            case GetStatus():
                await self._answer(message, lambda: c.status(message))
            case GetReport():
                await self._answer(message, lambda: c.report(message))
            case CreateToken():
                await self._answer(message, lambda: c.create_token(message))
            case ListTokens():
                await self._answer(message, lambda: c.list_tokens(message))
            case RevokeToken():
                await self._answer(message, lambda: c.revoke_token(message))
            # periodic schedules
            case AddSchedule():
                await self._answer(message, lambda: c.add_schedule(message))
            case ListSchedules():
                await self._answer(message, lambda: c.list_schedules(message))
            case ShowSchedule():
                await self._answer(message, lambda: c.show_schedule(message))
            case ChangeSchedule():
                await self._answer(message, lambda: c.change_schedule(message))
            # follows
            case Subscribe():
                self._start_poll(lambda: self._follow_events(message))
            case FollowOutput():
                self._start_poll(lambda: follow_output(self._broker, self._outbox, c, message))
            # workers
            case RegisterWorker():
                await self._answer(message, lambda: w.register(message))
            case RequestJobs():  # a long poll: must not hold up the others
                self._start_poll(lambda: self._answer(message, lambda: w.lease(message)))
            case RenewLeases():
                await self._answer(message, lambda: w.renew(message))
            case CompleteJobs():
                await self._answer(message, lambda: w.complete(message))
            case ReturnLeases():
                await self._answer(message, lambda: w.return_leases(message))
            case AppendOutput():
                w.append_output(message)
            case ReportWorkerState():
                w.report_state(message)
            # the connection
            case Ping(rid=rid):
                await self._outbox.send(Pong(rid=rid))
            case _:
                raise BadFrame(f"unexpected {type(message).__name__} after the handshake")

    async def _answer(self, request: Request[R], handler: Callable[[], Awaitable[R]]) -> None:
        """Run a request and send its reply, or an Error for its rid if it was refused."""
        rid = request.rid
        reply: R | Error
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

    async def _follow_events(self, message: Subscribe) -> None:
        if await follow_events(self._broker, self._outbox, message):
            await self._fell_behind()

    async def _refuse(self, message: PeerMessage, exc: Forbidden) -> None:
        """A request the principal's role may not make: an Error for its rid; the connection stays open.
        A push (no rid: output, a worker state) has no reply to refuse it with: it is dropped."""
        rid = message.rid if isinstance(message, Request) else None
        log.warning("request.forbidden", op=type(message).__name__, rid=rid, error=str(exc))
        if rid is not None:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self._outbox.send(Error(rid=rid, code=exc.code, message=str(exc)))


def _push(outbox: MemoryObjectSendStream[Message], message: Message) -> None:
    # If it cannot be queued, the worker learns it from its next heartbeat's reply.
    with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
        outbox.send_nowait(message)

"""Every request type against every role, on a real broker: the authorization table (gridd/broker/
authorization.py) decides, each refusal is a typed Forbidden naming the token, its role and what it may
not do, and the connection stays open. A new request type without a rule fails here."""

from __future__ import annotations

import hashlib
import typing
from collections.abc import Callable
from pathlib import Path

import pytest

from gridd.broker.authorization import RULES, refusal
from gridd.broker.principals import ROLES, Principal
from gridd.client import connect
from gridd.client.connection import Connection, open_connection
from gridd.protocol.errors import Forbidden, GriddError
from gridd.protocol.messages import (
    AddSchedule,
    AppendOutput,
    ChangeSchedule,
    CompleteJobs,
    ControlJobs,
    CreateToken,
    ExplainJob,
    FollowOutput,
    GetBlob,
    GetBundle,
    GetReport,
    GetStatus,
    Hello,
    JobResult,
    JobSpec,
    LeaseRef,
    ListBundles,
    ListJobs,
    ListSchedules,
    ListTokens,
    ListWorkers,
    Message,
    PeerMessage,
    Ping,
    PurgeJobs,
    PushBundle,
    PutBlob,
    ReadOutput,
    ReadResults,
    RegisterWorker,
    RenewLeases,
    ReportWorkerState,
    RequestJobs,
    ReturnLeases,
    RevokeToken,
    ShowJob,
    ShowSchedule,
    SubmitJobs,
    Subscribe,
    WaitJobs,
)
from tests.conftest import TOKEN, running_broker

BLOB = hashlib.sha256(b"x").hexdigest()
JOB = "1"  # the submit token's own job, cancelled (finished) before the requests are made

# One valid request of each type that the broker answers at once (or, for the two pushes, not at all).
REQUESTS: dict[type[Message], Callable[[int], Message]] = {
    Ping: lambda rid: Ping(rid=rid),
    SubmitJobs: lambda rid: SubmitJobs(rid=rid, jobs=[JobSpec(argv=["true"], queue="q")]),
    ShowJob: lambda rid: ShowJob(rid=rid, job_id=JOB),
    ExplainJob: lambda rid: ExplainJob(rid=rid, job_id=JOB),
    ListJobs: lambda rid: ListJobs(rid=rid),
    WaitJobs: lambda rid: WaitJobs(rid=rid, job_ids=[JOB]),
    ReadOutput: lambda rid: ReadOutput(rid=rid, job_id=JOB),
    FollowOutput: lambda rid: FollowOutput(rid=rid, job_id=JOB),
    ReadResults: lambda rid: ReadResults(rid=rid, job_ids=[JOB]),
    ControlJobs: lambda rid: ControlJobs(rid=rid, action="hold", job_ids=[JOB]),
    PurgeJobs: lambda rid: PurgeJobs(rid=rid, older_than_s=10**6),
    GetStatus: lambda rid: GetStatus(rid=rid),
    GetReport: lambda rid: GetReport(rid=rid, by="queue"),
    ListWorkers: lambda rid: ListWorkers(rid=rid),
    Subscribe: lambda rid: Subscribe(rid=rid),
    PutBlob: lambda rid: PutBlob(rid=rid, blob=BLOB, size=1, offset=0, data=b"x"),
    GetBlob: lambda rid: GetBlob(rid=rid, blob=BLOB),
    PushBundle: lambda rid: PushBundle(rid=rid, name="b", files=[]),
    ListBundles: lambda rid: ListBundles(rid=rid),
    GetBundle: lambda rid: GetBundle(rid=rid, ref="b"),
    RegisterWorker: lambda rid: RegisterWorker(rid=rid, host="h", slots=1, queues=["default"]),
    RequestJobs: lambda rid: RequestJobs(rid=rid, max_jobs=1),
    RenewLeases: lambda rid: RenewLeases(rid=rid, leases=[]),
    CompleteJobs: lambda rid: CompleteJobs(
        rid=rid,
        results=[JobResult(job_id=JOB, lease=1, exit_code=0, outcome="exited", started_ms=1, ended_ms=2)],
    ),
    ReturnLeases: lambda rid: ReturnLeases(rid=rid, leases=[LeaseRef(job_id=JOB, lease=1)]),
    CreateToken: lambda rid: CreateToken(rid=rid, name=f"made-{rid}", role="read"),
    ListTokens: lambda rid: ListTokens(rid=rid),
    RevokeToken: lambda rid: RevokeToken(rid=rid, name="nobody-by-that-name"),
    AddSchedule: lambda rid: AddSchedule(
        rid=rid, name=f"s-{rid}", cron="@daily", spec=JobSpec(argv=["true"], queue="q")
    ),
    ListSchedules: lambda rid: ListSchedules(rid=rid),
    ShowSchedule: lambda rid: ShowSchedule(rid=rid, name="nobody-by-that-name"),
    ChangeSchedule: lambda rid: ChangeSchedule(rid=rid, name="nobody-by-that-name", action="pause"),
}
PUSHES: dict[type[Message], Message] = {
    AppendOutput: AppendOutput(chunks=[]),
    ReportWorkerState: ReportWorkerState(state="available", accepting=True),
}
HANDSHAKE_ONLY = {Hello}


def test_the_table_has_a_rule_for_every_request_type_and_the_test_a_case_for_each() -> None:
    members = set(typing.get_args(PeerMessage))
    assert set(RULES) == members, f"without a rule: {members - set(RULES)}; stale: {set(RULES) - members}"
    assert set(REQUESTS) | set(PUSHES) | HANDSHAKE_ONLY == members
    assert RULES[Hello].roles == set(ROLES) and RULES[Ping].roles == set(ROLES)
    for kind, rule in RULES.items():
        assert "admin" in rule.roles, f"the admin may do everything, {kind.__name__} too"


async def _credentials(addr: str) -> dict[str, tuple[str, str]]:
    """role -> (credential, the name a peer with it says hello with)."""
    async with connect(addr, TOKEN) as admin:
        made = {role: (await admin.create_token(f"t-{role}", role))[0] for role in ("submit", "worker", "read")}
    async with connect(addr, made["submit"]) as own:  # the submit token's own job, finished
        job = await own.submit(["true"], queue="q")
        assert job == JOB
        await own.cancel(job)
    return {"admin": (TOKEN, "admin-peer"), **{role: (c, f"t-{role}") for role, c in made.items()}}


async def _ask(conn: Connection, build: Callable[[int], Message]) -> GriddError | None:
    try:
        await conn.request(build)
    except GriddError as exc:
        return exc
    return None


@pytest.mark.parametrize("role", ROLES)
async def test_every_request_type_is_allowed_or_refused_by_the_table(tmp_path: Path, role: str) -> None:
    async with running_broker(tmp_path) as b:
        credential, name = (await _credentials(b.addr))[role]
        peer = "worker" if role == "worker" else "client"
        principal = Principal(name=name if role != "admin" else "admin", role=role)  # type: ignore[arg-type]
        for kind, build in REQUESTS.items():
            # A connection each: a registration or a subscription must not change what the next one sees.
            async with open_connection(b.addr, credential, role=peer, name=name) as conn:
                got = await _ask(conn, build)
                role_refusal = str(refusal(principal, RULES[kind].what))
                if role in RULES[kind].roles:
                    assert got is None or str(got) != role_refusal, (kind.__name__, role, got)
                else:
                    assert isinstance(got, Forbidden), (kind.__name__, role, got)
                    assert str(got) == role_refusal
                    assert await _ask(conn, lambda rid: Ping(rid=rid)) is None  # the connection stays open
        for kind, push in PUSHES.items():
            async with open_connection(b.addr, credential, role=peer, name=name) as conn:
                await conn.send(push)
                after = await _ask(conn, lambda rid: Ping(rid=rid))
                if role in RULES[kind].roles:
                    # Allowed: an unregistered worker state breaks the wire rules (closed); output is ignored.
                    assert (after is not None) == (kind is ReportWorkerState), (kind.__name__, role, after)
                else:
                    assert after is None, (kind.__name__, role, after)  # dropped, the connection stays open

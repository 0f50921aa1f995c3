"""Who may make which request: one table, request type -> the roles that may send it, and the checks
of ownership, queues and leases that go with it. Routing (routing.py) asks here before anything is served.

The roles (gridd/broker/principals.py):
- admin: everything, tokens included (the cluster token is the admin credential named "admin").
- submit: submits (only to its queues, if its token names some), and sees, waits for, controls and
  reads the output and results of its own jobs only (owner == its name; a group: all its jobs). Its
  job listing is filtered to its own jobs. It sees queue counts, workers and the event stream (events
  say which job changed state where, never its command, env or output). Bundles and blobs: it may push,
  list and fetch them (a job's inputs); it may not purge, administer tokens or act as a worker.
- worker: registers only under its token's name, serves only its token's queues, and leases, renews,
  completes and hands back only its own leases (the store binds leases to the worker and its instance);
  fetches only the bundles and blobs of the jobs leased to it now; stores blobs (large task results).
  It never submits, lists, controls or reads jobs.
- read: sees jobs, workers, counts and events; never output, results or blobs. The jobs it sees are
  stripped of their arguments: argv keeps only the program (argv[0]); env, stdin and task arguments
  never leave the broker in any job view anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from gridd.broker.principals import ROLES, Principal, Role
from gridd.protocol.errors import Forbidden
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
    JobSpec,
    JobView,
    ListBundles,
    ListJobs,
    ListSchedules,
    ListTokens,
    ListWorkers,
    Message,
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


@dataclass(frozen=True, slots=True)
class Rule:
    """Who may send a request, and how a refusal says what it was ("may not <what>")."""

    roles: frozenset[Role]
    what: str


def _roles(*roles: Role) -> frozenset[Role]:
    return frozenset(roles)


ALL = frozenset(ROLES)
ADMIN = _roles("admin")
WORKER = _roles("admin", "worker")
LOOK = _roles("admin", "submit", "read")  # what a person watching the grid sees

RULES: dict[type[Message], Rule] = {
    Hello: Rule(ALL, "start a connection"),  # the handshake's frame; after it, a protocol error for anyone
    Ping: Rule(ALL, "ping"),
    # jobs
    # For a submit token, every request that names jobs acts on its own only: the session checks each job
    # named (or filters a listing) with owner_filter, as the rule table cannot.
    SubmitJobs: Rule(_roles("admin", "submit"), "submit jobs"),
    ShowJob: Rule(LOOK, "show jobs"),
    ExplainJob: Rule(LOOK, "explain jobs"),  # `why`: what show says, and the workers it lists
    ListJobs: Rule(LOOK, "list jobs"),
    WaitJobs: Rule(LOOK, "wait for jobs"),
    ReadOutput: Rule(_roles("admin", "submit"), "read the output of jobs"),
    FollowOutput: Rule(_roles("admin", "submit"), "follow the output of jobs"),
    ReadResults: Rule(_roles("admin", "submit"), "read the results of jobs"),
    ControlJobs: Rule(_roles("admin", "submit"), "control jobs"),
    PurgeJobs: Rule(ADMIN, "purge jobs"),
    # the grid
    GetStatus: Rule(LOOK, "see the status"),
    GetReport: Rule(LOOK, "see the accounting report"),  # submit: a report of its own jobs
    ListWorkers: Rule(LOOK, "list workers"),
    Subscribe: Rule(LOOK, "follow events"),
    # inputs and outputs: bundles and blobs
    PutBlob: Rule(_roles("admin", "submit", "worker"), "store blobs"),
    GetBlob: Rule(_roles("admin", "submit", "worker"), "fetch blobs"),
    PushBundle: Rule(_roles("admin", "submit"), "push bundles"),
    ListBundles: Rule(_roles("admin", "submit"), "list bundles"),
    GetBundle: Rule(_roles("admin", "submit", "worker"), "fetch bundles"),
    # workers
    RegisterWorker: Rule(WORKER, "register as a worker"),
    RequestJobs: Rule(WORKER, "lease jobs"),
    RenewLeases: Rule(WORKER, "renew leases"),
    CompleteJobs: Rule(WORKER, "complete jobs"),
    ReturnLeases: Rule(WORKER, "return leases"),
    AppendOutput: Rule(WORKER, "send job output"),
    ReportWorkerState: Rule(WORKER, "report a worker state"),
    # tokens
    CreateToken: Rule(ADMIN, "create tokens"),
    ListTokens: Rule(ADMIN, "list tokens"),
    RevokeToken: Rule(ADMIN, "revoke tokens"),
    # periodic schedules: a submit token adds, sees and changes its own only (checked by the session)
    AddSchedule: Rule(_roles("admin", "submit"), "add schedules"),
    ListSchedules: Rule(LOOK, "list schedules"),
    ShowSchedule: Rule(LOOK, "show schedules"),
    ChangeSchedule: Rule(_roles("admin", "submit"), "change schedules"),
}


def check(principal: Principal, message: Message) -> None:
    """Forbidden unless the principal's role may send this kind of request at all."""
    rule = RULES.get(type(message))
    if rule is None:  # a message with no rule is refused to all but the admin (and fails the table test)
        rule = Rule(ADMIN, f"send {type(message).__name__}")
    if principal.role not in rule.roles:
        raise refusal(principal, rule.what)


def refusal(principal: Principal, what: str, why: str = "") -> Forbidden:
    """The one line a refused request shows: "token 'ci' (role submit) may not cancel job 12: ..."."""
    return Forbidden(f"token {principal.name!r} (role {principal.role}) may not {what}" + (f": {why}" if why else ""))


def owner_filter(principal: Principal) -> str | None:
    """The owner whose jobs this principal may see or act on; None: anyone's."""
    return principal.name if principal.role == "submit" else None


def check_queues(principal: Principal, specs: Iterable[JobSpec]) -> None:
    """A submit token with --queues submits only to those."""
    if principal.role != "submit" or not principal.queues:
        return
    for spec in specs:
        if spec.queue not in principal.queues:
            raise refusal(
                principal, f"submit to queue {spec.queue!r}", f"it submits only to {_names(principal.queues)}"
            )


def check_worker(principal: Principal, hello_name: str, message: RegisterWorker) -> None:
    """A worker token registers only under its own name, and serves only its token's queues (a
    registration that names another queue is refused, not narrowed: a worker that serves less than
    its operator said would be a silent surprise)."""
    if principal.role != "worker":
        return
    if hello_name != principal.name:
        raise refusal(principal, f"register as worker {hello_name!r}", f"it registers only as {principal.name!r}")
    others = [q for q in message.queues if principal.queues and q not in principal.queues]
    if others:
        raise refusal(principal, f"serve queue {others[0]!r}", f"it serves only {_names(principal.queues)}")


def job_ref(ref: str) -> str:
    return f"group {ref}" if ref.startswith("g") else f"job {ref}"


def visible(principal: Principal, job: JobView) -> JobView:
    """The job as this principal may see it: a read token gets it without its arguments."""
    if principal.role != "read" or len(job.argv) <= 1:
        return job
    return msgspec.structs.replace(job, argv=job.argv[:1])


def _names(queues: Iterable[str]) -> str:
    return ", ".join(repr(q) for q in queues)

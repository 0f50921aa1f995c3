"""Every error gridd raises on purpose, with the stable code that travels in an Error frame.

Rule: codes never change meaning. 1xxx wire, 2xxx auth, 3xxx jobs, 4xxx leases and workers, 5xxx broker.
An unknown code from a newer peer becomes a plain GriddError, never a crash.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar


class ErrorCode(enum.IntEnum):
    BAD_FRAME = 1000
    FRAME_TOO_LARGE = 1001
    UNSUPPORTED_VERSION = 1002
    SLOW_CONSUMER = 1003
    AUTH_FAILED = 2000
    FORBIDDEN = 2001
    TRANSPORT_MISMATCH = 2010  # TLS on one side, plain TCP (--insecure) on the other
    UNKNOWN_JOB = 3000
    ILLEGAL_TRANSITION = 3001
    INVALID_REQUEST = 3002
    BAD_RESULT = 3003
    PAYLOAD_TOO_LARGE = 3004
    UNKNOWN_BLOB = 3005
    UNKNOWN_BUNDLE = 3006
    KEY_CONFLICT = 3010  # a submit key used before for another request
    BROKER_TOO_OLD = 3011  # the client refused a request: the broker did not announce a feature it uses
    STALE_LEASE = 4000
    WORKER_NAME_IN_USE = 4001
    NOT_A_WORKER = 4002
    FOREIGN_LEASE = 4003
    INTERNAL = 5000
    SHUTTING_DOWN = 5001
    STORAGE_FAILED = 5002
    TOO_MANY_CONNECTIONS = 5003


class GriddError(Exception):
    """Base of every error gridd raises on purpose; `code` is what travels in an Error frame."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL


class ProtocolError(GriddError):
    """The peer broke the wire rules: the connection that carried it is closed."""


class BadFrame(ProtocolError):
    """A frame that does not decode to a known message, or a message out of place."""

    code = ErrorCode.BAD_FRAME


class FrameTooLarge(ProtocolError):
    """A length prefix larger than the frame limit; refused before the body is read."""

    code = ErrorCode.FRAME_TOO_LARGE


class UnsupportedVersion(ProtocolError):
    """The peer speaks a protocol version this side does not."""

    code = ErrorCode.UNSUPPORTED_VERSION


class SlowConsumer(ProtocolError):
    """An event subscriber fell too far behind and was dropped to protect the broker."""

    code = ErrorCode.SLOW_CONSUMER


class AuthFailed(GriddError):
    """The peer could not prove the cluster secret."""

    code = ErrorCode.AUTH_FAILED


class NoToken(AuthFailed):
    """Client side: no cluster token was given or found, so there is nothing to authenticate with."""


class TransportMismatch(AuthFailed):
    """One side speaks TLS and the other plain TCP (--insecure on one side only): nothing was
    authenticated. The message says which side to change."""

    code = ErrorCode.TRANSPORT_MISMATCH


class UntrustedBroker(AuthFailed):
    """Client side: the broker could not be verified (its certificate is not of the CA the credential
    names, or there is no CA to check it against), so the secret was not sent."""


class OperationRefused(GriddError):
    """A valid request the broker refused; the connection stays open."""

    code = ErrorCode.INVALID_REQUEST


class Forbidden(OperationRefused):
    """The credential's role (or its queues, or the job's owner) does not allow this request; the
    connection stays open. The message names the token, its role and what it may not do."""

    code = ErrorCode.FORBIDDEN


class UnknownJob(OperationRefused):
    """No job (or group) has that id."""

    code = ErrorCode.UNKNOWN_JOB


class IllegalTransition(OperationRefused):
    """The job's state does not allow that (cancel a finished job, release one not held)."""

    code = ErrorCode.ILLEGAL_TRANSITION


class InvalidRequest(OperationRefused):
    """A request that decodes but makes no sense (an empty command, an unknown action)."""

    code = ErrorCode.INVALID_REQUEST


class BadArguments(InvalidRequest, TypeError):
    """A task's arguments do not match its signature or annotations (refused before submitting)."""


class BadResult(OperationRefused):
    """A task's result was refused: a batch returned a different number of results than it had records."""

    code = ErrorCode.BAD_RESULT


class PayloadTooLarge(OperationRefused):
    """A task's arguments or result exceed MAX_BLOB_BYTES."""

    code = ErrorCode.PAYLOAD_TOO_LARGE


class UnknownBlob(OperationRefused):
    """No complete blob has that id (a payload that was never uploaded, or only in part)."""

    code = ErrorCode.UNKNOWN_BLOB


class UnknownBundle(OperationRefused):
    """No bundle has that name, or it has no such version."""

    code = ErrorCode.UNKNOWN_BUNDLE


class KeyConflict(OperationRefused):
    """A submit named a key (--key) that this credential used before for a different request: the jobs
    that key made are named; nothing was submitted."""

    code = ErrorCode.KEY_CONFLICT


class BrokerTooOld(OperationRefused):
    """A request uses a feature (protocol/features.py) the broker did not announce in its Welcome: an
    older broker would ignore the field it does not know and do something else than asked (run a delayed
    job at once, submit a keyed one twice). Raised by the client before sending; nothing was sent."""

    code = ErrorCode.BROKER_TOO_OLD


class JobFailed(GriddError):
    """Client side: a job whose result was asked for did not succeed (failed or cancelled)."""

    def __init__(self, message: str, *, job_id: str, state: str, exit_code: int | None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.state = state
        self.exit_code = exit_code

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments: pickle (across processes) needs to be told how to rebuild it.
        return _rebuild, (type(self), str(self), self.__dict__)


class TaskFailed(JobFailed):
    """Client side: the task raised. `remote_type`, `remote_message` and `remote_traceback` are the
    exception as it happened on the worker."""

    def __init__(
        self, message: str, *, job_id: str, state: str, remote_type: str, remote_message: str, remote_traceback: str
    ) -> None:
        super().__init__(message, job_id=job_id, state=state, exit_code=1)
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback


class StaleLease(OperationRefused):
    """A completion or renewal presented a lease that is no longer the job's current one."""

    code = ErrorCode.STALE_LEASE


class ForeignLease(OperationRefused):
    """A completion presented the current lease of a job leased to another worker (or to another
    instance of the same name): only the worker the lease was given to may end it."""

    code = ErrorCode.FOREIGN_LEASE


class WorkerNameInUse(OperationRefused):
    """Another live worker is connected under the same name."""

    code = ErrorCode.WORKER_NAME_IN_USE


class NotAWorker(OperationRefused):
    """A worker-only request arrived on a connection that did not register as a worker."""

    code = ErrorCode.NOT_A_WORKER


class ShuttingDown(GriddError):
    """The broker is stopping and takes no new work."""

    code = ErrorCode.SHUTTING_DOWN


class StorageFailed(GriddError):
    """The broker could not commit (disk full, I/O error); nothing was acknowledged."""

    code = ErrorCode.STORAGE_FAILED


class ConnectionLost(GriddError):
    """Client side: the broker is unreachable or went away."""


class TooManyConnections(ConnectionLost):
    """The broker holds as many connections that have not authenticated yet as it allows (from this
    address, or in all); it closed this one at once. Try again shortly."""

    code = ErrorCode.TOO_MANY_CONNECTIONS


class DataDirInUse(GriddError):
    """Another broker already runs on the data directory (two would split the grid between them)."""


class CannotListen(GriddError):
    """The broker could not listen on an address it was given (in use, or not this machine's)."""


class WorkDirInUse(GriddError):
    """Another worker on this machine already uses the work directory (two workers would delete each
    other's jobs' directories)."""


class WorkDirNotOwned(GriddError):
    """The work directory holds files but no worker's marker: a worker never empties a directory it
    did not make (or adopt empty) itself."""


class BundleUnavailable(GriddError):
    """Worker side: a job's bundle could not be fetched, or its content arrived damaged."""


class ConfigError(GriddError):
    """A setting is missing or malformed (a flag, an environment variable, the config file)."""


def _rebuild(cls: type[JobFailed], message: str, fields: dict[str, Any]) -> JobFailed:
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(fields)
    return exc


_BY_CODE: dict[int, type[GriddError]] = {
    cls.code: cls
    for cls in (
        BadFrame,
        FrameTooLarge,
        UnsupportedVersion,
        SlowConsumer,
        AuthFailed,
        Forbidden,
        TransportMismatch,
        UnknownJob,
        IllegalTransition,
        InvalidRequest,
        BadResult,
        PayloadTooLarge,
        UnknownBlob,
        UnknownBundle,
        KeyConflict,
        BrokerTooOld,
        StaleLease,
        ForeignLease,
        WorkerNameInUse,
        NotAWorker,
        ShuttingDown,
        StorageFailed,
        TooManyConnections,
    )
}


def exception_for(code: int, message: str) -> GriddError:
    """Turn an Error frame back into the typed exception it stands for (unknown codes: GriddError)."""
    return _BY_CODE.get(code, GriddError)(message)

"""Every error gridd raises on purpose, with the stable code that travels in an Error frame.

Rule: codes never change meaning. 1xxx wire, 2xxx auth, 3xxx jobs, 4xxx leases and workers, 5xxx broker.
An unknown code from a newer peer becomes a plain GriddError, never a crash.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class ErrorCode(enum.IntEnum):
    BAD_FRAME = 1000
    FRAME_TOO_LARGE = 1001
    UNSUPPORTED_VERSION = 1002
    SLOW_CONSUMER = 1003
    AUTH_FAILED = 2000
    UNKNOWN_JOB = 3000
    ILLEGAL_TRANSITION = 3001
    INVALID_REQUEST = 3002
    STALE_LEASE = 4000
    WORKER_NAME_IN_USE = 4001
    NOT_A_WORKER = 4002
    INTERNAL = 5000
    SHUTTING_DOWN = 5001
    STORAGE_FAILED = 5002


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


class OperationRefused(GriddError):
    """A valid request the broker refused; the connection stays open."""

    code = ErrorCode.INVALID_REQUEST


class UnknownJob(OperationRefused):
    """No job (or group) has that id."""

    code = ErrorCode.UNKNOWN_JOB


class IllegalTransition(OperationRefused):
    """The job's state does not allow that (cancel a finished job, release one not held)."""

    code = ErrorCode.ILLEGAL_TRANSITION


class InvalidRequest(OperationRefused):
    """A request that decodes but makes no sense (an empty command, an unknown action)."""

    code = ErrorCode.INVALID_REQUEST


class StaleLease(OperationRefused):
    """A completion or renewal presented a lease that is no longer the job's current one."""

    code = ErrorCode.STALE_LEASE


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


class WorkDirInUse(GriddError):
    """Another worker on this machine already uses the work directory (two workers would delete each
    other's jobs' directories)."""


class ConfigError(GriddError):
    """A setting is missing or malformed (a flag, an environment variable, the config file)."""


_BY_CODE: dict[int, type[GriddError]] = {
    cls.code: cls
    for cls in (
        BadFrame,
        FrameTooLarge,
        UnsupportedVersion,
        SlowConsumer,
        AuthFailed,
        UnknownJob,
        IllegalTransition,
        InvalidRequest,
        StaleLease,
        WorkerNameInUse,
        NotAWorker,
        ShuttingDown,
        StorageFailed,
    )
}


def exception_for(code: int, message: str) -> GriddError:
    """Turn an Error frame back into the typed exception it stands for (unknown codes: GriddError)."""
    return _BY_CODE.get(code, GriddError)(message)

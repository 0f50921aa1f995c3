"""Exit codes, and the one line a person reads when a command fails.

Exit codes: 0 ok, 1 the operation failed, 2 usage or settings, 3 cannot connect or authenticate.

The protocol's errors are imported when something failed, for start-up speed: the parser reads the exit
codes here, and `gridd --version` and `--help` must not load the protocol (and msgspec) for them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONNECT = 0, 1, 2, 3


def report(raised: BaseException) -> int:
    """One line on stderr and the exit code for what ended the command (the cause, not its wrapping)."""
    from gridd.printable import printable  # start-up: see the module's docstring
    from gridd.protocol.errors import GriddError

    exc = root_cause(raised)
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, BrokenPipeError):
        _silence_stdout()
        return EXIT_FAILED
    if isinstance(exc, GriddError):
        print(f"gridd: {printable(str(exc))}", file=sys.stderr)  # it may quote what a peer sent
        return exit_code_for(exc)
    # The person sees one line; GRIDD_DEBUG=1 shows the traceback (of the whole group, if one).
    if os.environ.get("GRIDD_DEBUG"):
        _log_crash(raised)
    hint = "" if os.environ.get("GRIDD_DEBUG") else " (GRIDD_DEBUG=1 shows the traceback)"
    print(f"gridd: internal error: {type(exc).__name__}: {printable(str(exc))}{hint}", file=sys.stderr)
    return EXIT_FAILED


def root_cause(exc: BaseException) -> BaseException:
    """What a person should hear about when a task group wrapped it (maybe in several layers of groups):
    the first GriddError among the leaves, else the first other Exception, else the first leaf
    (a KeyboardInterrupt, say). A bare exception is its own cause."""
    from gridd.protocol.errors import GriddError  # start-up: see the module's docstring

    leaves = list(_leaves(exc))
    for wanted in (GriddError, Exception):
        for leaf in leaves:
            if isinstance(leaf, wanted):
                return leaf
    return leaves[0] if leaves else exc


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def exit_code_for(exc: BaseException) -> int:
    from gridd.protocol.errors import AuthFailed, ConfigError, ConnectionLost, OperationRefused  # start-up

    if isinstance(exc, ConnectionLost | AuthFailed):
        return EXIT_CONNECT
    if isinstance(exc, ConfigError):
        return EXIT_USAGE
    if isinstance(exc, OperationRefused):
        return EXIT_FAILED
    return EXIT_FAILED


def _log_crash(exc: BaseException) -> None:
    try:
        # Imported here, for start-up speed: structlog is loaded only by a command that crashed.
        import structlog

        from gridd.logs import configure_logging

        configure_logging("error", "logfmt")
        structlog.get_logger().error("cli.crashed", exc_info=exc)
    except Exception:  # noqa: BLE001 - logging must not turn one error into two
        pass


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())

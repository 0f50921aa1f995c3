"""The size limits of what a peer may hand the broker, and how each size is counted. Pure: no I/O.

Rules: every limit here has a default the broker may be told to change (BrokerConfig), is checked by
the broker (the client checks early only for a nicer message), and is refused with one line that says
the size and the limit, so a person knows by how much to shrink what they sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import msgspec

from gridd.protocol.records import JobSpec

MAX_COMMAND_BYTES = 256 * 1024  # a job's argv and env together (as execve would count them)
MAX_STDIN_BYTES = 4 * 1024 * 1024  # a job's --stdin, which travels inside its spec
MAX_OUTPUT_BYTES = 1024 * 1024  # of each stream of an attempt, kept by the worker and by the broker
LIST_REPLY_BYTES = 4 * 1024 * 1024  # a page of `jobs` stays this far under the frame limit


def command_bytes(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """What a command takes: each argument and each KEY=VALUE, UTF-8, with its terminating NUL."""
    size = len("\0".join(argv).encode()) + 1 if argv else 0  # one join, not an encode per argument
    return size + sum(len(k.encode()) + len(v.encode()) + 2 for k, v in env.items()) if env else size


def too_large(what: str, size: int, limit: int, setting: str) -> str | None:
    """The refusal of `size` bytes past `limit` (None within it), in one line; `what` ends in its verb
    ("its command and environment take")."""
    if size <= limit:
        return None
    return f"{what} {size_text(size)} ({size:,} bytes); the limit is {size_text(limit)} ({setting})"


def size_text(n: int) -> str:
    """A byte count for people: '300 KiB', '14.0 MiB', '512 bytes'."""
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.0f} KiB"
    return f"{n} bytes"


def all_fit(specs: Sequence[JobSpec], max_command_bytes: int, max_stdin_bytes: int) -> bool:
    """Whether every spec is surely within both limits, told from their encoded size at once: a spec's
    encoding holds each argument, variable and input byte with a header of at least a byte, so it is
    larger than what spec_too_large counts. False only says to check each spec (a submit of 1,000 small
    jobs is one encode, not 1,000 counts)."""
    return len(_sizer.encode(specs)) <= min(max_command_bytes, max_stdin_bytes)


_sizer = msgspec.msgpack.Encoder()


def whose_job(number: int, count: int) -> str:
    """Whose the sizes are, in a refusal of job `number` (from 1) of a submit of `count`."""
    return f"job {number} of {count}: its" if count > 1 else "the job's"


def spec_too_large(
    spec: JobSpec, max_command_bytes: int, max_stdin_bytes: int, whose: str | Callable[[], str] = "the job's"
) -> str | None:
    """Why `spec` is past the limits (its argv+env, or its stdin with inline task arguments), or None.
    `whose` may be a function that says it, called only for a refusal (a submit checks every job it holds)."""
    command = command_bytes(spec.argv, spec.env)
    stdin = len(spec.stdin or b"") + len(spec.task.args if spec.task is not None else b"")
    if command <= max_command_bytes and stdin <= max_stdin_bytes:
        return None
    who = whose if isinstance(whose, str) else whose()
    return too_large(
        f"{who} command and environment take", command, max_command_bytes, "gridd broker --max-command-bytes"
    ) or too_large(
        f"{who} standard input (or inline task arguments) takes",
        stdin,
        max_stdin_bytes,
        "gridd broker --max-stdin-bytes",
    )

"""How a submit travels: its specs cut into requests under CHUNK_BYTES (each SubmitJobs a chunk, under a
key its numbered part), and what is checked before any is sent (bundle references, the key and its TTL),
since the broker would close the connection on decoding them.

Rule: the cut depends on the specs alone, so a submit retried under its key sends the same chunks, and
the broker answers each part it made with the same ids.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Sequence

import msgspec

from gridd.protocol.bundles import ref_problem
from gridd.protocol.errors import InvalidRequest, PayloadTooLarge
from gridd.protocol.idempotency import key_problem, key_ttl_problem
from gridd.protocol.job_messages import JobsAccepted, SubmitJobs
from gridd.protocol.limits import all_fit, spec_too_large, whose_job
from gridd.protocol.records import JobSpec

# Many jobs travel in chunks so that no submit frame nears the frame limit (16 MiB).
CHUNK_BYTES = 4 * 1024 * 1024
_size = msgspec.msgpack.Encoder()


def check_request(specs: Sequence[JobSpec], key: str | None, key_ttl_s: float | None) -> None:
    """InvalidRequest for a bundle reference, key or TTL the broker would not decode."""
    for problem in {ref_problem(s.bundle) for s in specs if s.bundle is not None} - {None}:
        raise InvalidRequest(str(problem))
    problem = key_problem(key) if key is not None else None
    if problem is None and key_ttl_s is not None:
        problem = key_ttl_problem(key_ttl_s) if key is not None else "a key's TTL applies to a submit with a key"
    if problem is not None:
        raise InvalidRequest(problem)


def check_sizes(specs: Sequence[JobSpec], max_command_bytes: int, max_stdin_bytes: int) -> None:
    """PayloadTooLarge for a spec over the broker's limits, as its welcome said them (0: not said), so that
    one too large for a frame is never sent, and nothing of the submit is. The broker checks again."""
    max_command = max_command_bytes or 2**62
    max_stdin = max_stdin_bytes or 2**62
    if all_fit(specs, max_command, max_stdin):
        return
    for number, spec in enumerate(specs, start=1):
        problem = spec_too_large(spec, max_command, max_stdin, functools.partial(whose_job, number, len(specs)))
        if problem is not None:
            raise PayloadTooLarge(f"{problem}; nothing was submitted")


Submitting = Generator[Callable[[int], SubmitJobs], JobsAccepted, tuple[list[str], str | None]]


def requests(
    specs: Sequence[JobSpec],
    *,
    after: Sequence[str],
    new_group: bool,
    max_running: int | None,
    key: str | None,
    key_ttl_s: float | None,
) -> Submitting:
    """The chunks' requests, one at a time, each sent with its reply given back (`send`), whatever the
    connection (the async client's, the one-shot CLI's); returns the jobs' ids in order and their group.
    The chunks after the first join the group the first made. Under a key each chunk is kept as its part: a
    retry sends the same chunks (their cut depends on the specs alone), is answered for those that were made,
    and makes the rest."""
    ids: list[str] = []
    group: str | None = None
    for part, chunk in enumerate(chunks(specs)):
        first = part == 0
        reply = yield message(
            chunk,
            after,
            new_group and first,
            None if first else group,
            max_running if first else None,
            (key, key_ttl_s, part),
        )
        ids.extend(reply.job_ids)
        group = reply.group
    return ids, group


def message(
    jobs: list[JobSpec],
    after: Sequence[str],
    new_group: bool,
    group: str | None,
    max_running: int | None,
    keyed: tuple[str | None, float | None, int],
) -> Callable[[int], SubmitJobs]:
    """The request of one chunk, for the rid the connection gives it; `keyed`: (key, TTL, part)."""
    key, key_ttl_s, key_part = keyed

    def build(rid: int) -> SubmitJobs:
        return SubmitJobs(
            rid=rid,
            jobs=jobs,
            after=list(after),
            new_group=new_group,
            group=group,
            max_running=max_running,
            key=key,
            key_ttl_s=key_ttl_s if key is not None else None,
            key_part=key_part if key is not None else 0,
        )

    return build


def chunks(specs: Sequence[JobSpec]) -> list[list[JobSpec]]:
    """Consecutive runs of specs whose encoded size stays under CHUNK_BYTES (at least one each)."""
    if len(_size.encode(specs)) <= CHUNK_BYTES:  # most submits: one chunk, as the loop below would cut it
        return [list(specs)]
    out: list[list[JobSpec]] = [[]]
    size = 0
    for spec in specs:
        n = len(_size.encode(spec))
        if out[-1] and size + n > CHUNK_BYTES:
            out.append([])
            size = 0
        out[-1].append(spec)
        size += n
    return out

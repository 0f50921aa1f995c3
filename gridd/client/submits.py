"""How a submit travels: its specs cut into requests under CHUNK_BYTES (each SubmitJobs a chunk, under a
key its numbered part), and what is checked before any is sent (bundle references, the key and its TTL),
since the broker would close the connection on decoding them.

Rule: the cut depends on the specs alone, so a submit retried under its key sends the same chunks, and
the broker answers each part it made with the same ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from gridd.protocol.bundles import ref_problem
from gridd.protocol.errors import InvalidRequest
from gridd.protocol.idempotency import key_problem, key_ttl_problem
from gridd.protocol.job_messages import SubmitJobs
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

"""The numbers every part of the broker reads, fixed at start from its configuration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gridd.protocol.errors import InvalidRequest, PayloadTooLarge
from gridd.protocol.limits import MAX_COMMAND_BYTES, MAX_OUTPUT_BYTES, MAX_STDIN_BYTES, spec_too_large
from gridd.protocol.records import JobSpec
from gridd.protocol.retries import causes_problem


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """The numbers every session needs."""

    lease_ttl_ms: int
    retry_base_ms: int
    max_bundle_bytes: int = 4 * 1024**3  # a bundle version's files, unpacked, in all
    max_command_bytes: int = MAX_COMMAND_BYTES
    max_stdin_bytes: int = MAX_STDIN_BYTES
    max_output_bytes: int = MAX_OUTPUT_BYTES
    keep_ms: int | None = None  # finished jobs older than this are purged (None: never)

    @property
    def heartbeat_s(self) -> float:
        """Workers renew three times per TTL, so one lost heartbeat never costs a lease."""
        return self.lease_ttl_ms / 3000

    def check_spec(self, spec: JobSpec, whose: str | Callable[[], str], outcome: str, *, fits: bool = False) -> None:
        """Refuse a spec a client sent that the broker would not keep, in one line ending in `outcome`:
        past the size limits (every listing, lease and retry would carry it), or with retry causes that
        cannot be read (the wire checks their shape, not their numbers). `whose`: as spec_too_large's; `fits`:
        its sizes are known to be within the limits (limits.all_fit)."""
        problem = None if fits else spec_too_large(spec, self.max_command_bytes, self.max_stdin_bytes, whose)
        if problem is not None:
            raise PayloadTooLarge(f"{problem}; {outcome}")
        if spec.retry_on and (problem := causes_problem(spec.retry_on)) is not None:
            raise InvalidRequest(f"{problem}; {outcome}")
        if spec.gang and spec.task is not None:
            raise InvalidRequest(f"a Python task cannot be a gang: --gang runs commands; {outcome}")

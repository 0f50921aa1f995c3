"""What a broker knows beyond the protocol version: the names of the request fields and requests added
since, which it announces in its Welcome (`Welcome.features`).

Why: msgspec ignores unknown fields on decode, so an older broker would take a submit with `start_at_ms`
and run the job at once, or make a second job for a retried keyed submit, without a word. A client
therefore refuses, before sending, a request that uses a feature the broker did not announce (an older
broker announces none). The wire stays compatible both ways; a new field that an older broker may ignore
safely needs no name here.

Rule: each message (or record) says which features it relies on, in its own `features_used` (the base
Message's: none); this module knows the names and imports no message, so that a command that speaks one
request (`gridd status`) does not import every message module to check it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

START_AT = "start-at"  # JobSpec.start_at_ms (submit --at / --in)
RETRY_ON = "retry-on"  # JobSpec.retry_on, retry_delay_s (submit --retry-on / --retry-delay)
SUBMIT_KEY = "submit-key"  # SubmitJobs.key, key_ttl_s, key_part (submit --key)
SCHEDULES = "schedules"  # AddSchedule and the requests around it (schedule add)
GANG = "gang"  # JobSpec.gang (submit --gang N): an older broker would run one member alone

# Every feature this version of gridd knows: what its broker announces.
KNOWN: frozenset[str] = frozenset({START_AT, RETRY_ON, SUBMIT_KEY, SCHEDULES, GANG})

# How a person asked for each (the CLI's words), for the one line that refuses it.
ASKED_AS: dict[str, str] = {
    START_AT: "--at/--in",
    RETRY_ON: "--retry-on/--retry-delay",
    SUBMIT_KEY: "--key",
    SCHEDULES: "schedule add",
    GANG: "--gang",
}


class UsesFeatures(Protocol):
    """A message, or a record inside one (a job's spec), that may rely on features."""

    def features_used(self) -> Sequence[str]:
        """The features it relies on, in a fixed order (a request's own first, then its specs')."""
        ...


def used(request: UsesFeatures) -> list[str]:
    """The features `request` (a message, or one job's spec) relies on, each once, in a fixed order: the
    request's own first, then its specs'. A message that carries no spec and is no new request relies on none."""
    return list(dict.fromkeys(request.features_used()))


def missing(request: UsesFeatures, announced: Collection[str]) -> str | None:
    """The first feature `request` uses that a broker which announced `announced` lacks (None: none)."""
    return next((feature for feature in used(request) if feature not in announced), None)


def too_old(feature: str, address: str) -> str:
    """The one line that refuses a request using `feature` of the broker at `address`."""
    asked = ASKED_AS.get(feature, feature)
    return (
        f"the broker at {address} does not know {asked} (it is older than this gridd); "
        "upgrade the broker, or submit without it"
    )

"""The lead of a group commit (commit.py, pg_commit.py), handed from batch to batch: the caller that finds
no batch running leads the next one; once that batch has committed, the first call still queued is woken to
lead the one after, then the batch's callers, in commit order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import anyio


class Waiting(Protocol):
    """A call waiting for its batch: woken when it committed, or (`leads`) to lead the next batch."""

    leads: bool
    woken: anyio.Event


def hand_on(queued: Sequence[Waiting], committed: Iterable[Waiting]) -> bool:
    """Wake the next leader first, so that the next batch's SQL runs while the `committed` batch's callers
    go on; then them. Returns whether a call leads now."""
    if queued:
        queued[0].leads = True
        queued[0].woken.set()
    for call in committed:
        call.woken.set()
    return bool(queued)

"""Nudge: how one part of the worker wakes the one task of another that waits for it.

Rule: a Nudge has exactly one waiting task, which re-checks its own condition after every wake-up (in a
loop). Nudges coalesce: any number of them before the waiter runs wake it once, and one sent while it
is busy wakes its next wait at once, so none is lost. It replaces a broadcast "something changed"
event: each waiter has its own, and only the parts that can change what it waits for nudge it.
"""

from __future__ import annotations

import anyio


class Nudge:
    """A coalescing wake-up for one waiting task (see the module's rules)."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = anyio.Event()

    def __call__(self) -> None:
        """Wake the waiter (now, or at its next wait)."""
        self._event.set()

    async def wait(self) -> None:
        """Until the next nudge (or at once if one came since the last wait). One waiter only: it may
        replace the event, because nobody else waits on the old one."""
        await self._event.wait()
        self._event = anyio.Event()

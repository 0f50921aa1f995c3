"""Exponential backoff with jitter: the one way gridd waits before trying a broker again.

Used by the worker's reconnect loop, the CLI's waits that ride through a broker restart and the
dashboard's event feed. Jitter spreads a crowd of workers that lost the same broker over time, so its
restart is not met by all of them in the same millisecond.
"""

from __future__ import annotations

import random

import anyio


class Backoff:
    """Delays of `first_s`, doubling up to `max_s`, each scaled by a random factor in 1 ± `jitter`.

    `give_up_after_s`, when set, bounds the whole series: `wait()` returns False, without sleeping, once the
    time since the first failure (or since `reset()`) has passed it."""

    def __init__(
        self, first_s: float, max_s: float, *, jitter: float = 0.2, give_up_after_s: float | None = None
    ) -> None:
        if not 0 < first_s <= max_s:
            raise ValueError(f"backoff delays must satisfy 0 < first_s <= max_s (got {first_s}, {max_s})")
        self._first_s = first_s
        self._max_s = max_s
        self._jitter = jitter
        self._give_up_after_s = give_up_after_s
        self._delay = first_s
        self._since: float | None = None

    @property
    def next_delay_s(self) -> float:
        """The delay the next `wait()` sleeps, before jitter: what a message to a person should say."""
        return self._delay

    def reset(self) -> None:
        """After a success: the next failure starts again from the first delay."""
        self._delay = self._first_s
        self._since = None

    async def wait(self) -> bool:
        """Sleep the next delay and grow it; False (at once) when the series has run out of time."""
        now = anyio.current_time()
        if self._since is None:
            self._since = now
        if self._give_up_after_s is not None and now - self._since >= self._give_up_after_s:
            return False
        await anyio.sleep(self._delay * random.uniform(1 - self._jitter, 1 + self._jitter))  # noqa: S311
        self._delay = min(self._delay * 2, self._max_s)
        return True

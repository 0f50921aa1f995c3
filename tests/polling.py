"""The one way tests wait for a condition: poll it until it holds, with a deadline, a bounded number of
rounds, and a failure that says what was awaited and the last value seen.

`eventually` is for async tests (in-process brokers, workers, Textual's pilot); `wait_until` is its sync
twin for the subprocess tests of tests/e2e, whose processes run on their own while the test blocks. Both
share `_Waiting` (the bound, the last value, the message), so they cannot drift apart.

A check returns a value; the wait is over when the value is truthy, or when `holds(value)` is true if the
caller gives `holds` (then the value itself, e.g. a job's record, is what a timeout shows). The value that
ended the wait is returned.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

import anyio

T = TypeVar("T")
DEFAULT_WITHIN_S = 15.0
_NOTHING = object()  # no value seen yet (the check never returned before the deadline)


def _described(check: Callable[..., Any], what: str | None) -> str:
    """What was awaited, for the failure: given, or the check's name, or a lambda's line of source."""
    if what:
        return what
    name = getattr(check, "__name__", "")
    if name and name != "<lambda>":
        return name.replace("_", " ")
    try:
        return " ".join(inspect.getsource(check).split())
    except (OSError, TypeError):
        return repr(check)


@dataclass
class _Waiting:
    """One wait's bound and what it saw: both helpers poll through it."""

    check: Callable[..., Any]
    what: str | None
    within_s: float
    every_s: float
    holds: Callable[[Any], bool] | None
    last: Any = _NOTHING
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        if self.within_s <= 0 or self.every_s <= 0:
            raise ValueError("a wait needs a positive deadline and step")
        self.deadline = time.monotonic() + self.within_s

    def rounds(self) -> range:
        """As many rounds as the deadline allows (each waits `every_s`), and two more: bounded in count too."""
        return range(int(self.within_s / self.every_s) + 2)

    def met(self, value: Any) -> bool:
        self.last = value
        return bool(self.holds(value) if self.holds is not None else value)

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def timed_out(self) -> AssertionError:
        seen = "nothing (the check never returned)" if self.last is _NOTHING else repr(self.last)
        return AssertionError(
            f"timed out after {self.within_s:g}s waiting for {_described(self.check, self.what)}; last seen: {seen}"
        )


@overload
async def eventually(
    check: Callable[[], Awaitable[T]],
    within_s: float = ...,
    every_s: float = ...,
    *,
    what: str | None = ...,
    holds: Callable[[T], bool] | None = ...,
    settle: Callable[[], Awaitable[object]] | None = ...,
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T],
    within_s: float = ...,
    every_s: float = ...,
    *,
    what: str | None = ...,
    holds: Callable[[T], bool] | None = ...,
    settle: Callable[[], Awaitable[object]] | None = ...,
) -> T: ...


async def eventually(
    check: Callable[[], Any],
    within_s: float = DEFAULT_WITHIN_S,
    every_s: float = 0.02,
    *,
    what: str | None = None,
    holds: Callable[[Any], bool] | None = None,
    settle: Callable[[], Awaitable[object]] | None = None,
) -> Any:
    """Poll `check` (sync or async) every `every_s` until it holds; return the value that did.

    `settle` is awaited before each look: with Textual, `pilot.pause` lets the app process its messages
    first. A check that hangs is cut off by the same deadline. Fails the test with an AssertionError.
    """
    __tracebackhide__ = True
    waiting = _Waiting(check, what, within_s, every_s, holds)
    with anyio.move_on_after(within_s):
        for _ in waiting.rounds():
            if settle is not None:
                await settle()
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if waiting.met(value):
                return value
            await anyio.sleep(every_s)
    raise waiting.timed_out()


def wait_until(
    check: Callable[[], T],
    within_s: float = DEFAULT_WITHIN_S,
    what: str | None = None,
    every_s: float = 0.1,
    *,
    holds: Callable[[T], bool] | None = None,
) -> T:
    """Blocking `eventually`, for tests whose broker, workers and CLI are subprocesses (tests/e2e)."""
    __tracebackhide__ = True
    waiting = _Waiting(check, what, within_s, every_s, holds)
    for _ in waiting.rounds():
        value = check()
        if waiting.met(value):
            return value
        if waiting.expired():
            break
        time.sleep(every_s)
    raise waiting.timed_out()

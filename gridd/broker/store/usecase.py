"""How a use case becomes the async method the broker calls, whatever the database: each is written once,
as a function of the transaction it runs in (`Tx`: submit.py, leasing.py, ...), and `use_case` makes it a
method of the store that hands it to its backend's group commit, saying how it commits.

Rules: a use case runs alone under a savepoint of the next group commit and returns only after COMMIT;
`durable` ones only once the commit is on disk. `read_now` marks the small reads a backend may answer right
away instead (SQLite: on the event loop, from its read-only connection; see database.py). `changes` finds the
jobs a use case changed in its result, for a backend shared by several brokers to announce to the others in
the same transaction (changes.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, overload

from gridd.broker.observe import Observer
from gridd.broker.store.changes import Changes
from gridd.broker.store.sql import Tx

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")

ReadNow = Literal["never", "few", "always"]
UseCase = Callable[Concatenate["Backend", P], Coroutine[Any, Any, T]]


class Backend:
    """A database's group commit, as the use cases see it."""

    _observer: Observer

    async def _call(
        self,
        fn: Callable[Concatenate[Tx, P], T],
        durable: bool,
        read_now: ReadNow,
        changes: Changes | None,
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run `fn(tx, *args, **kwargs)` in the next group commit (or at once, for a read_now read), and
        announce what it changed (`changes`) if other brokers share the database."""
        raise NotImplementedError


@overload
def use_case(
    fn: Callable[Concatenate[Tx, P], T], *, durable: bool, read_now: ReadNow = "never", changes: Changes | None = None
) -> UseCase[P, T]: ...


@overload
def use_case(
    fn: Callable[Concatenate[Tx, P], R],
    *,
    durable: bool,
    read_now: ReadNow = "never",
    changes: Changes | None = None,
    then: Callable[[Observer, R], T],
) -> UseCase[P, T]: ...


def use_case(
    fn: Callable[Concatenate[Tx, P], Any],
    *,
    durable: bool,
    read_now: ReadNow = "never",
    changes: Changes | None = None,
    then: Callable[[Observer, Any], Any] | None = None,
) -> UseCase[P, Any]:
    """The async method that runs `fn(tx, ...)` as one transaction: on disk when it returns if `durable`;
    `read_now` as its backend allows. `then(observer, result)`, if given, runs after the commit (to report
    what committed) and makes the method's result."""

    async def run(store: Backend, /, *args: P.args, **kwargs: P.kwargs) -> Any:
        result = await store._call(fn, durable, read_now, changes, *args, **kwargs)
        return result if then is None else then(store._observer, result)

    return functools.wraps(fn)(run)

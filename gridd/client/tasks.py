"""Python tasks: `@gridd.task` makes a typed function something the grid can run.

What a task is and how its calls and results travel: client/taskdef.py. Here: the decorator, the registry
of declared tasks (which the worker serves by module) and the sugar of running a task without naming a
client, `task.submit(...)` and `task.map(...)`, on the current client of client/current.py.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ParamSpec, TypeVar

from gridd.client import current
from gridd.client.blocking import SyncHandle
from gridd.client.taskdef import TaskDef, TaskOptions

P = ParamSpec("P")
R = TypeVar("R")

_REGISTRY: dict[str, Task[Any, Any]] = {}


class Task(TaskDef[P, R]):
    """A function the grid can run. Calling it runs it here; `submit` and `map` run it on the grid through
    the current client (client/current.py); async code passes its client: `await client.submit_task(task, ...)`."""

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> SyncHandle[R]:
        """Run it on the grid; returns a handle (`.result()`, `.cancel()`). Uses the innermost
        `with gridd.connect_sync(...)` of this thread, else a connection to the default broker."""
        return current.client().submit_task(self, *args, **kwargs)

    def map(self, records: Iterable[Any], *, batch: int = 100, ordered: bool = True) -> Iterator[Any]:
        """Run it over `records` in jobs of `batch` records; yields one result per record, in order (or
        as jobs complete, with `ordered=False`)."""
        return current.client().map(self, records, batch=batch, ordered=ordered)


@typing.overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@typing.overload
def task(
    *,
    queue: str = ...,
    priority: int = ...,
    max_attempts: int = ...,
    timeout_s: float | None = ...,
    run: str = ...,
    batch: bool = ...,
    cpus: int = ...,
    memory_mb: int = ...,
    requires: dict[str, str] = ...,
    retry_on: Sequence[str] = ...,
    retry_delay_s: float | None = ...,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(fn: Any = None, /, **options: Any) -> Any:
    """Declare a task: `@gridd.task` or `@gridd.task(batch=True, run="process", max_attempts=1, ...)`."""

    def declare(f: Callable[..., Any]) -> Task[Any, Any]:
        declared = Task(f, TaskOptions(**options))
        _REGISTRY[declared.name] = declared
        return declared

    return declare(fn) if fn is not None else declare


def tasks_of(module: str) -> dict[str, Task[Any, Any]]:
    """The tasks declared in an imported module, by name."""
    prefix = f"{module}:"
    return {name: t for name, t in _REGISTRY.items() if name.startswith(prefix)}


def find_task(name: str) -> Task[Any, Any] | None:
    return _REGISTRY.get(name)

"""A task's definition: a typed function as the grid carries it, the same on both sides.

A task is named "module:qualname" and runs on workers started with `gridd worker --tasks module`.
Its arguments travel as one msgpack array, validated against the annotations twice: by the submitter
before anything is sent (a bad argument is a BadArguments, a TypeError, at the call) and by the worker
when it decodes them. Its return value is validated by the worker before it leaves, and decoded into
the annotated type by the caller.

A batch is a job of many records (`map`): the worker calls a plain task once per record, or a task
declared `batch=True` once with the list of records, and sends back one list with a result per record;
the broker refuses a list of any other length.

Rule: this module knows no client and no connection (the submitter's client takes a TaskDef; the worker
decodes with one); `@gridd.task`, the registry and the `submit`/`map` sugar are in client/tasks.py.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, ParamSpec, Self, TypeVar

import msgspec

from gridd.protocol.errors import BadArguments, ConfigError
from gridd.protocol.messages import JobSpec, TaskCall
from gridd.protocol.retries import MAX_RETRY_DELAY_S, parse_retry_on

P = ParamSpec("P")
R = TypeVar("R")

RUN_MODES = ("async", "thread", "process")
_encoder = msgspec.msgpack.Encoder()


@dataclasses.dataclass(frozen=True, slots=True)
class TaskOptions:
    """How the jobs of a task are submitted and run (the decorator's keywords)."""

    queue: str = "default"
    priority: int = 0
    max_attempts: int = 3
    timeout_s: float | None = None
    run: str = "auto"  # async (on the worker's event loop) | thread | process; auto: async for `async def`
    batch: bool = False  # the function takes a list of records and returns a list of results
    cpus: int = 1  # what each of its jobs takes on its worker
    memory_mb: int = 0
    requires: Mapping[str, str] = dataclasses.field(default_factory=dict)  # worker tags it needs: {"gpu": "1"}
    retry_on: Sequence[str] = ()  # only these failures are retried ("exit:75", "lost", ...); empty: any
    retry_delay_s: float | None = None  # the first retry after this long, then doubling; None: the broker's


class TaskDef(Generic[P, R]):
    """A function the grid can carry. Calling it runs it here; clients run it on the grid (`Task` adds
    `submit` and `map` over the current client)."""

    def __init__(self, fn: Callable[P, R], options: TaskOptions) -> None:
        self.fn = fn
        self.name = f"{fn.__module__}:{fn.__qualname__}"
        self.module = fn.__module__
        self.is_async = inspect.iscoroutinefunction(fn)
        run = options.run if options.run != "auto" else ("async" if self.is_async else "thread")
        if run not in RUN_MODES:
            raise ConfigError(f"task {self.name}: run={options.run!r}; expected auto, async, thread or process")
        if self.is_async != (run == "async"):
            raise ConfigError(f"task {self.name}: run='async' is for `async def` functions, and only for them")
        self.options = dataclasses.replace(options, run=run, retry_on=_retry_on(options, self.name))
        self._signature = inspect.signature(fn)
        params, returns = _annotations(fn, self._signature, self.name)
        self._args = msgspec.msgpack.Decoder(msgspec.defstruct(f"{self.name} arguments", params, array_like=True))
        self.arg_types = [t for _, t in params]
        self.returns: Any = returns
        if options.batch:
            if len(params) != 1:
                raise ConfigError(f"batch task {self.name} must take exactly one parameter: the list of records")
            self.record_type: Any = _item_type(params[0][1])
            self.batch_results: Any = returns
        else:
            self.record_type = params[0][1] if params else Any
            self.batch_results = list[returns]  # type: ignore[valid-type]
        self._records = msgspec.msgpack.Decoder(list[self.record_type])  # type: ignore[name-defined]
        self._result = msgspec.msgpack.Decoder(returns)
        self._batch_result = msgspec.msgpack.Decoder(self.batch_results)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<gridd task {self.name}>"

    def with_options(self, **changes: Any) -> Self:
        """The same task submitted differently (queue, priority, max_attempts, timeout_s, cpus, memory_mb,
        requires, retry_on, retry_delay_s)."""
        copy = type(self).__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.options = dataclasses.replace(self.options, **changes)
        copy.options = dataclasses.replace(copy.options, retry_on=_retry_on(copy.options, self.name))
        return copy

    # ---- the submitter's side ----------------------------------------------------------------------------

    def encode_call(self, args: Sequence[Any], kwargs: dict[str, Any]) -> bytes:
        """The arguments as the worker will decode them; BadArguments if they do not fit the signature."""
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise BadArguments(f"{self.name}: {exc}") from None
        bound.apply_defaults()
        values = list(bound.arguments.values())
        payload = self._encode(values, "arguments")
        try:
            self._args.decode(payload)
        except msgspec.ValidationError as exc:
            raise BadArguments(f"{self.name}: {_which_argument(exc, list(bound.arguments))}") from None
        return payload

    def encode_records(self, records: Sequence[Any], first: int = 0) -> bytes:
        """A batch of records as the worker will decode them; BadArguments names the first bad record."""
        payload = self._encode(list(records), "records")
        try:
            self._records.decode(payload)
        except msgspec.ValidationError as exc:
            raise BadArguments(f"{self.name}: {_which_record(exc, first)}") from None
        return payload

    def spec(self, call: TaskCall) -> JobSpec:
        o = self.options
        return JobSpec(
            argv=[self.name],
            queue=o.queue,
            priority=o.priority,
            max_attempts=o.max_attempts,
            timeout_s=o.timeout_s,
            task=call,
            cpus=o.cpus,
            memory_mb=o.memory_mb,
            requires=dict(o.requires),
            retry_on=list(o.retry_on),
            retry_delay_s=o.retry_delay_s,
        )

    def decode_result(self, value: bytes) -> R:
        return self._result.decode(value)  # type: ignore[no-any-return]

    def decode_batch(self, value: bytes) -> list[Any]:
        return self._batch_result.decode(value)  # type: ignore[no-any-return]

    def _encode(self, value: Any, what: str) -> bytes:
        try:
            return _encoder.encode(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise BadArguments(f"{self.name}: the {what} cannot be encoded: {exc}") from None

    # ---- the worker's side ---------------------------------------------------------------------------------

    def decode_call(self, payload: bytes) -> tuple[Any, ...]:
        return msgspec.structs.astuple(self._args.decode(payload))

    def decode_records(self, payload: bytes) -> list[Any]:
        return self._records.decode(payload)

    def encode_value(self, value: Any, *, batch: bool) -> bytes:
        """The return value, checked against the annotation (what the caller will decode it as)."""
        payload = _encoder.encode(value)
        try:
            (self._batch_result if batch else self._result).decode(payload)
        except msgspec.ValidationError as exc:
            raise TypeError(f"{self.name} returned a value that does not match its annotation: {exc}") from None
        return payload


def _annotations(fn: Callable[..., Any], signature: inspect.Signature, name: str) -> tuple[list[tuple[str, Any]], Any]:
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # noqa: BLE001 - any failure to resolve is the same problem for the user
        raise ConfigError(f"task {name}: cannot resolve its annotations: {exc}") from None
    params = []
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ConfigError(f"task {name}: *{p.name} cannot travel; give every parameter a name")
        params.append((p.name, hints.get(p.name, Any)))
    return params, hints.get("return", Any)


def _item_type(list_type: Any) -> Any:
    args = typing.get_args(list_type)
    return args[0] if args else Any


def _which_argument(exc: msgspec.ValidationError, names: list[str]) -> str:
    """msgspec says `$[1]`; a person wants the parameter's name."""
    text = str(exc)
    for i, name in enumerate(names):
        text = text.replace(f"`$[{i}]", f"argument `{name}").replace(f"`$[{i}].", f"`{name}.")
    return text


def _which_record(exc: msgspec.ValidationError, first: int) -> str:
    text = str(exc)
    head, sep, rest = text.partition("`$[")
    index, close, tail = rest.partition("]")
    if sep and close and index.isdigit():
        return f"{head}record {first + int(index)}{tail.rstrip('`')}".rstrip(" -at")
    return text


def _retry_on(options: TaskOptions, name: str) -> tuple[str, ...]:
    """retry_on as the causes a JobSpec carries; ConfigError naming the task if one is not a cause."""
    delay = options.retry_delay_s
    if delay is not None and not 0 <= delay <= MAX_RETRY_DELAY_S:
        raise ConfigError(f"task {name}: retry_delay_s must be from 0 to {MAX_RETRY_DELAY_S:g} seconds, got {delay}")
    if isinstance(options.retry_on, str):
        raise ConfigError(f"task {name}: retry_on wants a list of causes, e.g. ['exit:75', 'lost']")
    try:
        return tuple(parse_retry_on(",".join(options.retry_on))) if options.retry_on else ()
    except ValueError as exc:
        raise ConfigError(f"task {name}: retry_on: {exc}") from None

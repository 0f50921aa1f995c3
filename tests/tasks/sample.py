"""Tasks the task tests run on real workers (imported by them as `tests.tasks.sample`)."""

from __future__ import annotations

import dataclasses
import os
import threading
import time

import anyio

import gridd

__version__ = "1.4.2"


@dataclasses.dataclass
class Point:
    x: float
    y: float


@gridd.task
def add(a: int, b: int = 2) -> int:
    return a + b


@gridd.task
def square(x: int) -> int:
    return x * x


@gridd.task(batch=True)
def norms(points: list[Point]) -> list[float]:
    return [(p.x**2 + p.y**2) ** 0.5 for p in points]


@gridd.task(batch=True, max_attempts=2)
def drops_one(values: list[int]) -> list[int]:
    """A buggy batch task: it loses the last record."""
    return values[:-1]


@gridd.task(max_attempts=1)
def boom(message: str) -> None:
    raise ValueError(message)


@gridd.task
def echo(data: bytes) -> bytes:
    return data


@gridd.task
def size_of(data: bytes) -> int:
    return len(data)


@gridd.task
def blob_of(n: int) -> bytes:
    return os.urandom(16) * (n // 16)


@gridd.task
def wrong_type(x: int) -> int:
    return str(x)  # type: ignore[return-value]


@gridd.task
async def nap(seconds: float) -> str:
    await anyio.sleep(seconds)
    return "rested"


@gridd.task(max_attempts=1)
def hold_slot(seconds: float) -> tuple[float, float, int]:
    """Blocks its thread; returns when it started and ended, and which thread ran it."""
    start = time.monotonic()
    time.sleep(seconds)
    return start, time.monotonic(), threading.get_ident()


@gridd.task(max_attempts=1, timeout_s=0.3)
def overstay(seconds: float) -> str:
    """Blocks its thread past its timeout: the worker gives up on it, the thread runs on."""
    time.sleep(seconds)
    return "late"


@gridd.task(run="process")
def where(x: int) -> tuple[int, int]:
    return x, os.getpid()


@gridd.task(max_attempts=1, timeout_s=0.5, run="process")
def forever() -> None:
    while True:
        time.sleep(0.05)

"""Cause-aware retries: whether a failed attempt runs again, after how long, and when a job is poison.

Pure (no SQL, no clock): the store's completion and expiry ask `after_failure` for every attempt that
failed, and write what it says in the transaction that ends the attempt; the table of transitions still
says whether the move is legal. The causes are named in gridd/protocol/retries.py.

Rules, in this order:
1. The job's last attempt fails it, as it always did (its own reason kept).
2. A failure whose cause is not in the job's --retry-on fails it at once ("exit 2 is not in --retry-on
   exit:75"). No --retry-on: every failure is retried.
3. A job that failed with the same status (exit N, signal N, timeout) on POISON_WORKERS different workers
   is poison: failed at once, "poison: exit 3 on workers a, b, c". Lost leases and worker errors never
   count: they are the grid's failures, not the command's. Only failures since the job was submitted, or
   last retried by a person, count (the store keeps them as the job's strikes; a retry clears them).
4. Else it runs again: with --retry-delay D after D, 2D, 4D, ... (no jitter: the times `why` shows are
   the times it runs), never longer than MAX_BACKOFF_MS unless D itself is; without it as before: a
   failed command after the broker's delay (`default_delay_ms`), a lost lease at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from gridd.broker.transitions import Move
from gridd.protocol.retries import (
    BACKOFF_CAP_S,
    ERROR,
    EXIT,
    LOST,
    POISON_WORKERS,
    SIGNAL,
    TIMEOUT,
    Cause,
    parse_cause,
)

MAX_BACKOFF_MS: Final = round(BACKOFF_CAP_S * 1000)  # the doubling stops at an hour (or at D, if longer)
LEASE_EXPIRED: Final = "lease_expired"  # the outcome the store records for an attempt whose lease ended it
_SIGNAL_BASE = 128  # a worker reports signal N as the shell does: status 128+N
# The worker could not run the command (working directory, bundle, spawn, run-as user; a task's result
# too large to travel), or a batch task's results did not match its records (the store's own outcome).
_WORKER_ERRORS: Final = frozenset({"error", "bad_result"})

# Failure (its key: "exit:3", "signal:9", "timeout") -> the different workers it happened on, in order.
Strikes = dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class Retries:
    """A job's retry policy, from its spec: the causes it retries (empty: any), and its first delay."""

    causes: tuple[Cause, ...] = ()
    written: tuple[str, ...] = ()  # as submitted, for the reasons given
    delay_ms: int | None = None  # None: the broker's delay, and none after a lost lease

    @classmethod
    def of(cls, retry_on: Sequence[str], retry_delay_s: float | None) -> Retries:
        causes = []
        for word in retry_on:
            try:
                causes.append(parse_cause(word))
            except ValueError:  # never stored (JobSpec checks each at submit); if one were, it retries nothing
                continue  # rather than fail the whole batch of results it came with
        delay = None if retry_delay_s is None else round(retry_delay_s * 1000)
        return cls(tuple(causes), tuple(retry_on), delay)

    def retries(self, failure: Failure) -> bool:
        return not self.written or any(c.covers(failure.kind, failure.number) for c in self.causes)


@dataclass(frozen=True, slots=True)
class Failure:
    """What ended an attempt that did not succeed: `kind` is a cause of retries.py, `number` its status
    or signal."""

    kind: str
    number: int = 0

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.number}" if self.kind in (EXIT, SIGNAL) else self.kind

    @property
    def label(self) -> str:
        return f"{self.kind} {self.number}" if self.kind in (EXIT, SIGNAL) else self.kind

    @property
    def is_status(self) -> bool:
        """A status of the command's own (the same everywhere if the command is at fault)."""
        return self.kind in (EXIT, SIGNAL, TIMEOUT)


def failure_of(exit_code: int | None, outcome: str) -> Failure:
    """The cause of a failed attempt, from its exit status and its outcome as recorded."""
    if outcome == LEASE_EXPIRED:
        return Failure(LOST)
    if outcome == "timed_out":
        return Failure(TIMEOUT)
    if outcome == "signalled" and exit_code is not None and exit_code > _SIGNAL_BASE:
        return Failure(SIGNAL, exit_code - _SIGNAL_BASE)
    if exit_code is None or outcome in _WORKER_ERRORS:
        return Failure(ERROR)  # whatever status the worker gave it: not one of the command's own
    return Failure(EXIT, exit_code)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What becomes of a job whose attempt failed."""

    move: Move  # REQUEUE or FAIL
    delay_ms: int  # before it may be leased again (REQUEUE)
    reason: str | None  # the job's reason
    strikes: Strikes  # to keep with the job
    poison: bool = False


def after_failure(
    retries: Retries,
    failure: Failure,
    worker: str | None,
    attempt: int,
    max_attempts: int,
    strikes: Mapping[str, Sequence[str]],
    base_ms: int,
    own_reason: str | None,
) -> Verdict:
    """The verdict on attempt `attempt` (of `max_attempts`) of a job, failed on `worker` with `failure`.
    `strikes`: the job's failures so far; `base_ms`: the broker's retry delay; `own_reason`: what the
    attempt's end said (the worker's message, "lease expired on worker w1 ...")."""
    struck = {key: list(workers) for key, workers in strikes.items()}
    if failure.is_status and worker is not None and worker not in struck.setdefault(failure.key, []):
        struck[failure.key].append(worker)
    if attempt >= max_attempts:
        return Verdict(Move.FAIL, 0, own_reason, struck)
    if not retries.retries(failure):
        refused = f"{failure.label} is not in --retry-on {','.join(retries.written)}"
        return Verdict(Move.FAIL, 0, f"{own_reason}; {refused}" if own_reason else refused, struck)
    workers = struck.get(failure.key, []) if failure.is_status else []
    if len(workers) >= POISON_WORKERS:
        return Verdict(Move.FAIL, 0, f"poison: {failure.label} on workers {', '.join(workers)}", struck, True)
    return Verdict(Move.REQUEUE, delay_ms(retries, failure, attempt, base_ms), own_reason, struck)


def delay_ms(retries: Retries, failure: Failure, attempt: int, base_ms: int) -> int:
    """How long after attempt `attempt` failed the job may run again."""
    if retries.delay_ms is None:
        return 0 if failure.kind == LOST else default_delay_ms(attempt, base_ms)
    first = retries.delay_ms
    return min(first << min(attempt - 1, 40), max(first, MAX_BACKOFF_MS))


def default_delay_ms(attempt: int, base_ms: int) -> int:
    """The broker's delay before a failed command runs again: grows with the attempt, at most five times
    the base (--retry-delay-less jobs, as before cause-aware retries)."""
    return base_ms * min(attempt, 5)

"""Periodic schedules: what clients ask of them (add, list, show, pause, resume, remove), and the timer that
fires their slots, each as an ordinary job that names its schedule.

Rules: a slot fires once: the store moves a schedule from the slot due to the next only if no one moved
it first, in the transaction that submits the slot's job (store/schedules.py), so two brokers on one
store, or a broker restarted mid-firing, never fire it twice. Which slots a firing holds is decided here,
from the schedule's catch-up (gridd/cron.py): after downtime, none (skip what was missed), last (the
latest missed slot, once) or all (each, at most MAX_CATCH_UP). The timer sleeps until the earliest next
slot, is woken when a schedule is added or resumed, and looks again at least every MAX_SLEEP_S: another
broker on the store may have added one, and the wall clock may have been set. A refusal (a bad
expression, an unknown bundle) is raised before anything is written.
"""

from __future__ import annotations

import anyio
import msgspec
import structlog
from anyio.abc import TaskStatus

from gridd import cron
from gridd.broker.housekeeping import Housekeeping
from gridd.broker.ledger import Ledger
from gridd.broker.matching import LaneBook, lane_of_spec
from gridd.broker.settings import BrokerSettings
from gridd.broker.store import Store
from gridd.broker.store.schedule_rows import Firing
from gridd.clock import Clock
from gridd.protocol.errors import GriddError, InvalidRequest, PayloadTooLarge
from gridd.protocol.messages import JobSpec, ScheduleRun, ScheduleView

log = structlog.get_logger()

MAX_SLEEP_S = 60.0
DUE_BATCH = 100  # schedules fired per transaction
RUNS_SHOWN = 10  # `schedule show`: the latest runs


class Schedules:
    """The schedules of the broker's store, and the task that fires their slots."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: BrokerSettings,
        lanes: LaneBook,
        ledger: Ledger,
        housekeeping: Housekeeping,
    ) -> None:
        self._store = store
        self._clock = clock
        self._settings = settings
        self._lanes = lanes
        self._ledger = ledger
        self._housekeeping = housekeeping
        self._wake = anyio.Event()
        self.fired = 0  # jobs submitted by schedules since start (tests, metrics)

    # ---- what clients ask ------------------------------------------------------------------------------------

    async def add(self, name: str, expr: str, tz: str, catch_up: str, spec: JobSpec, owner: str) -> ScheduleView:
        """Keep a schedule that submits `spec` at each slot from now on."""
        parsed = _parse(expr, tz)
        if catch_up not in cron.CATCH_UP:
            raise InvalidRequest(f"--catch-up is one of {', '.join(cron.CATCH_UP)}, not {catch_up!r}")
        if not spec.argv or not spec.argv[0]:
            raise InvalidRequest("a schedule needs a command: gridd schedule add NAME --cron EXPR -- COMMAND")
        self._settings.check_spec(spec, "the job's", "no schedule was added")
        if spec.task is not None and spec.task.args_blob is not None:  # retention keeps blobs for jobs only
            raise PayloadTooLarge("a scheduled task's arguments must fit in its request; no schedule was added")
        if spec.bundle is not None:
            await self._store.get_bundle(spec.bundle)  # UnknownBundle now, rather than at every slot
        now = self._clock.now_ms()
        first = parsed.next_after(now)
        if first is None:
            raise InvalidRequest(f"cron expression {expr!r} never fires")
        template = msgspec.structs.replace(spec, schedule=None)  # the broker names it at each slot
        view = await self._store.add_schedule(name, parsed.expr, tz, catch_up, template, first, owner, now)
        log.info("schedule.added", schedule=name, cron=parsed.expr, tz=tz, catch_up=catch_up, owner=owner, first=first)
        self._wake.set()
        return view

    async def list_all(self, owner: str | None) -> list[ScheduleView]:
        return await self._store.list_schedules(owner)

    async def show(self, name: str) -> tuple[ScheduleView, list[ScheduleRun]]:
        return await self._store.get_schedule(name, RUNS_SHOWN)

    async def change(self, name: str, action: str) -> ScheduleView:
        """pause, resume (from the next slot after now: the slots of the pause are not caught up), remove."""
        next_ms = None
        if action == "resume":
            view, _ = await self._store.get_schedule(name, 0)
            next_ms = _parse(view.cron, view.tz).next_after(self._clock.now_ms())
        view = await self._store.change_schedule(name, action, next_ms)
        log.info(f"schedule.{action}d", schedule=name, next=view.next_slot_ms)
        self._wake.set()
        return view

    # ---- the timer -------------------------------------------------------------------------------------------

    def wake(self) -> None:
        """Look again now (a schedule was added or resumed; a test moved its clock)."""
        self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self._wake = anyio.Event()  # replaced before the pass, so a wake during it is not lost
            try:
                next_ms = await self.fire_due()
            except GriddError as exc:  # the store, for a moment: look again soon
                log.error("schedules.failed", error=str(exc))
                next_ms = self._clock.now_ms() + 1000
            except Exception:  # a bug of ours: schedules wait a while, the broker and its jobs go on
                log.exception("schedules.crashed")
                next_ms = None
            delay = MAX_SLEEP_S if next_ms is None else (next_ms - self._clock.now_ms()) / 1000
            with anyio.move_on_after(min(max(delay, 0.0), MAX_SLEEP_S)):
                await self._wake.wait()

    async def fire_due(self) -> int | None:
        """Fire every slot due now; returns the earliest next slot (None: no schedule has one)."""
        while True:
            now = self._clock.now_ms()
            due = await self._store.due_schedules(now, DUE_BATCH)
            if not due:
                return await self._store.next_slot_ms()
            firings: list[Firing] = []
            for d in due:
                try:
                    parsed = cron.parse(d.cron, d.tz)
                except cron.CronError as exc:  # a zone gone from the tz database: it stops, said once
                    log.error("schedule.stopped", schedule=d.name, error=str(exc))
                    firings.append(Firing(d.name, d.next_slot_ms, None))
                    continue
                slots = parsed.due(d.next_slot_ms, now, d.catch_up)
                firings.append(Firing(d.name, d.next_slot_ms, parsed.next_after(now), slots))
            with self._housekeeping.bringing():  # their queues' lanes must not be dropped meanwhile
                fired = await self._store.fire_schedules(firings, now)
            for firing, d, outcome in zip(firings, due, fired, strict=True):
                if outcome.raced:
                    continue
                if outcome.refused is not None:
                    log.warning("schedule.slot_refused", schedule=d.name, slot=firing.slots[-1], error=outcome.refused)
                    continue
                if outcome.transitions:
                    self._lanes.add([(d.spec.queue, lane_of_spec(d.spec))])
                    self.fired += len(outcome.transitions)
                    self._ledger.record(outcome.transitions, kind="job.submitted", log_each=False)
                log.info(
                    "schedule.fired",
                    schedule=d.name,
                    due=d.next_slot_ms,
                    slots=len(firing.slots),
                    jobs=",".join(t.job_id for t in outcome.transitions),
                    catch_up=d.catch_up,
                    next=firing.next_ms,
                )


def _parse(expr: str, tz: str) -> cron.Cron:
    try:
        return cron.parse(expr, tz)
    except cron.CronError as exc:
        raise InvalidRequest(str(exc)) from None

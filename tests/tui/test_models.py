"""The dashboard's plain models: counts stay exact from a snapshot plus events (or say they are not),
workers follow their jobs, throughput counts finished jobs per second, filters cycle."""

from __future__ import annotations

from gridd.protocol.messages import Event, WorkerView
from gridd.tui.formatting import age, tail
from gridd.tui.model.counts import CountBook
from gridd.tui.model.job_filter import JobFilter
from gridd.tui.model.throughput import Throughput
from gridd.tui.model.workers import WorkerBoard


def job(kind: str, job_id: str, state: str, queue: str = "q", worker: str | None = None) -> Event:
    return Event(kind=kind, ts_ms=1000, job_id=job_id, queue=queue, state=state, worker=worker)


def test_counts_follow_each_job_from_the_snapshot_through_its_events() -> None:
    book = CountBook()
    book.reset({"q": {"queued": 2, "held": 0}})
    for event in (
        job("job.submitted", "9", "queued"),
        job("job.started", "1", "running", worker="w"),
        job("job.succeeded", "1", "succeeded"),
        job("job.held", "2", "held"),
        job("job.cancelled", "2", "cancelled"),  # seen held just before: exact
        job("job.retried", "2", "queued"),
    ):
        book.apply(event)
    assert book.exact
    assert book.by_queue()["q"] == {"queued": 2, "running": 0, "held": 0, "succeeded": 1, "cancelled": 0}
    assert book.totals()["queued"] == 2


def test_counts_place_an_unseen_job_when_only_one_state_could_have_held_it() -> None:
    book = CountBook()
    book.reset({"q": {"queued": 3, "held": 0, "failed": 1, "cancelled": 0}}, running=["7"])
    book.apply(job("job.cancelled", "7", "cancelled"))  # known running from the snapshot's workers
    book.apply(job("job.cancelled", "5", "cancelled"))  # queued or held; held is 0
    book.apply(job("job.retried", "4", "queued"))  # failed or cancelled; both non-zero now
    assert not book.exact  # the dashboard takes a fresh snapshot


def test_workers_follow_which_jobs_they_run_and_ask_for_slots_when_one_joins() -> None:
    board = WorkerBoard()
    board.reset([WorkerView("w1", "h", 2, 1, ["3"], ["default"], {}, True, 0, 0)])
    assert board.rows["w1"].state == "busy"
    board.apply(job("job.started", "4", "running", worker="w1"))
    board.apply(job("job.succeeded", "3", "succeeded", worker="w1"))
    assert board.rows["w1"].sorted_jobs() == ["4"]
    assert board.slots() == (1, 2)
    board.apply(Event(kind="worker.joined", ts_ms=5, worker="w2", message="host2"))
    assert board.needs_refresh and board.rows["w2"].host == "host2"
    board.apply(job("job.cancelled", "4", "cancelled", worker="w1"))
    board.apply(Event(kind="worker.left", ts_ms=6, worker="w2"))
    assert list(board.rows) == ["w1"] and board.rows["w1"].state == "idle"


def test_throughput_counts_finished_jobs_in_the_second_they_arrive() -> None:
    now = [100.0]
    rate = Throughput(window_s=60, now=lambda: now[0])
    for _ in range(3):
        rate.record(job("job.succeeded", "1", "succeeded"))
    rate.record(job("job.started", "2", "running"))  # not a finish
    now[0] = 101.2
    rate.record(job("job.failed", "2", "failed"))
    series = rate.series()
    assert len(series) == 60 and series[-2:] == [3.0, 1.0]
    now[0] = 102.0
    assert rate.rate(over_s=2) == 2.0
    now[0] = 1000.0
    assert sum(rate.series()) == 0


def test_filters_cycle_through_states_and_queues() -> None:
    f = JobFilter()
    assert f.matches("failed", "any")
    f = f.next_state().next_state().next_state()
    assert f.state == "running" and not f.matches("queued", "q")
    f = f.next_queue(["a", "b"]).next_queue(["a", "b"])
    assert f.label() == "state=running queue=b"
    assert f.next_queue(["a", "b"]).queue is None


def test_output_tails_keep_the_last_lines_and_ages_read_short() -> None:
    text = tail(b"".join(b"line %d\n" % i for i in range(100)))
    assert text.splitlines()[-1] == "line 99" and "line 10\n" not in text and text.startswith("…")
    assert tail(b"") == "(empty)"
    assert age(10_000, now_s=10.5) == "now" and age(10_000, now_s=100) == "1m" and age(None) == "-"

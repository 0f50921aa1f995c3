"""`gridd broker --metrics HOST:PORT`: Prometheus metrics over HTTP, scraped and parsed as Prometheus would."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import anyio
from prometheus_client.parser import text_string_to_metric_families

from gridd.protocol.messages import JobSpec
from tests.conftest import client_of, running_broker, running_worker, tls_connect
from tests.e2e.conftest import Grid
from tests.polling import eventually


async def _get(port: int, path: str = "/metrics") -> tuple[int, str]:
    """An HTTP GET from a real HTTP client (urllib, in a thread): the status and the body."""

    def get() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:  # noqa: S310
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    return await anyio.to_thread.run_sync(get)


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) -> value, from the exposition format."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_a_scrape_counts_what_the_grid_did(tmp_path: Path) -> None:
    async with (
        running_broker(tmp_path, metrics="127.0.0.1:0") as b,
        running_worker(tmp_path, b.addr, slots=2),
        client_of(b) as client,
    ):
        ok = [await client.submit(["true"]) for _ in range(3)]
        bad = await client.submit(["sh", "-c", "exit 3"], max_attempts=2)
        held = await client.submit(["true"], queue="later")
        await client.hold(held)
        with anyio.fail_after(30):
            jobs = await client.wait([*ok, bad])
        assert [j.state for j in jobs] == ["succeeded"] * 3 + ["failed"]
        status = await client.status()
        assert b.broker.metrics_port
        code, text = await _get(b.broker.metrics_port)
    assert code == 200
    m = _samples(text)

    def one(name: str, **labels: str) -> float:
        return m[(name, frozenset(labels.items()))]

    assert one("gridd_jobs_submitted_total") == 5
    assert one("gridd_completions_total", outcome="succeeded") == 3
    assert one("gridd_completions_total", outcome="failed") == 1
    assert one("gridd_completions_total", outcome="requeued") == 1  # the failing job's first attempt
    assert one("gridd_completions_total", outcome="cancelled") == 0
    # Jobs by state, summed over the queues, are what `gridd status` says.
    by_state: dict[str, float] = {}
    for (name, labels), value in m.items():
        if name == "gridd_jobs":
            state = dict(labels)["state"]
            by_state[state] = by_state.get(state, 0) + value
    assert {s: n for s, n in by_state.items() if n} == {s: n for s, n in status.counts.items() if n}
    assert one("gridd_jobs", queue="later", state="held") == 1
    assert one("gridd_workers", state="available") == 1
    assert one("gridd_connections_open") >= 2  # the worker and this client
    assert one("gridd_connections_refused_total") == 0
    assert one("gridd_event_subscribers_dropped_total") == 0
    assert one("gridd_completions_refused_total", reason="stale") == 0
    assert one("gridd_completions_refused_total", reason="foreign") == 0
    # Histograms: each first lease waited, each recorded attempt took its time, commits were batched.
    assert one("gridd_job_queue_wait_seconds_count") == 4
    assert one("gridd_job_queue_wait_seconds_bucket", le="+Inf") == 4
    assert one("gridd_lease_duration_seconds_count") == 5
    assert one("gridd_lease_duration_seconds_sum") > 0
    assert one("gridd_store_commit_batch_calls_count") > 0
    assert one("gridd_store_commit_batch_calls_sum") >= one("gridd_store_commit_batch_calls_count")
    assert one("gridd_store_commit_seconds_count", sync="full") > 0  # the submits waited for fsync


async def test_two_brokers_in_one_process_keep_their_own_metrics(tmp_path: Path) -> None:
    async with (
        running_broker(tmp_path / "a", metrics="127.0.0.1:0") as a,
        running_broker(tmp_path / "b", metrics="127.0.0.1:0") as b,
        client_of(a) as client,
    ):
        await client.submit(["true"])
        assert a.broker.metrics_port and b.broker.metrics_port
        _, text_a = await _get(a.broker.metrics_port)
        _, text_b = await _get(b.broker.metrics_port)
        code, body = await _get(a.broker.metrics_port, "/")
    assert _samples(text_a)[("gridd_jobs_submitted_total", frozenset())] == 1
    assert _samples(text_b)[("gridd_jobs_submitted_total", frozenset())] == 0
    assert (code, body) == (404, "metrics are at /metrics\n")


async def test_a_broker_without_metrics_serves_none(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b:
        assert b.broker.metrics_port is None


def test_a_metrics_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = Grid(tmp_path).run_broker(flags=["--metrics", f"127.0.0.1:{port}"])
    assert result.returncode == 1
    said = [line for line in result.stderr.decode().splitlines() if line.startswith("gridd:")]
    assert said == [f"gridd: cannot serve metrics on 127.0.0.1:{port} (--metrics): Address already in use"]


async def test_refused_connections_and_dropped_subscribers_are_counted(tmp_path: Path) -> None:
    async with (
        running_broker(tmp_path, metrics="127.0.0.1:0", max_unauthenticated=1, max_pending_events=1) as b,
        client_of(b) as watcher,
        client_of(b) as submitter,
    ):
        assert b.broker.metrics_port
        await watcher.subscribe()
        await submitter.submit_many([JobSpec(argv=["true"])] * 2)  # one batch of 2 events: past 1 pending
        silent = await tls_connect(b.broker.port)  # holds the one unauthenticated place
        late = await anyio.connect_tcp("127.0.0.1", b.broker.port)  # refused at once

        async def counted() -> bool:
            m = _samples((await _get(b.broker.metrics_port or 0))[1])
            return (
                m[("gridd_connections_refused_total", frozenset())] == 1
                and m[("gridd_event_subscribers_dropped_total", frozenset())] == 1
            )

        await eventually(counted)
        await silent.aclose()
        await late.aclose()

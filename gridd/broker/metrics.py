"""Prometheus metrics of one broker, served over plain HTTP on the --metrics address (default: off).

Rules: the registry is the broker's own (several brokers in one process never share a series). What
the broker keeps in memory anyway (jobs by queue and state, workers, connections, counts of refusals)
is read at scrape time by a collector, never kept twice and never a store round trip; only what a hot
path alone knows (a commit's size and time, a job's wait, an attempt's length) is observed as it
happens, once per batch or per lease call. The endpoint has no authentication: bind it to 127.0.0.1
or a monitoring network. It is served on the broker's event loop, so a scrape reads the counts
between two of the broker's steps, never halfway through one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import cast

import anyio
import structlog
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskStatus
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gridd.broker import transitions as tr
from gridd.broker.admission import Admission
from gridd.broker.core import Broker
from gridd.broker.listener import accept_loop
from gridd.broker.observe import Observer
from gridd.config import parse_address
from gridd.protocol.errors import CannotListen
from gridd.protocol.messages import WORKER_STATES
from gridd.protocol.states import JobState

log = structlog.get_logger()

MAX_REQUEST_BYTES = 8192  # a request's line and headers; a scraper sends a few hundred
REQUEST_TIMEOUT_S = 10.0  # a connection that says nothing this long is closed
# Jobs wait from seconds (an idle grid) to days (a backlog); attempts run from a blink to a day.
QUEUE_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)
LEASE_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # store.commit.MAX_BATCH_CALLS is the largest
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class BrokerMetrics(Observer):
    """The broker's registry, its histograms (fed through the Observer calls) and its collector."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._queue_wait = Histogram(
            "gridd_job_queue_wait_seconds",
            "Time from a job's submit to its first lease (includes waiting on dependencies or held).",
            registry=r,
            buckets=QUEUE_WAIT_BUCKETS,
        )
        self._lease = Histogram(
            "gridd_lease_duration_seconds",
            "Time from an attempt's lease to its recorded result, on the broker's clock.",
            registry=r,
            buckets=LEASE_BUCKETS,
        )
        self._batch = Histogram(
            "gridd_store_commit_batch_calls",
            "Store calls carried by one group commit (one transaction).",
            registry=r,
            buckets=BATCH_BUCKETS,
        )
        commit = Histogram(
            "gridd_store_commit_seconds",
            "Time of one group commit, BEGIN to COMMIT; sync=full waited for fsync.",
            ["sync"],
            registry=r,
            buckets=COMMIT_BUCKETS,
        )
        self._commit = {True: commit.labels("full"), False: commit.labels("normal")}

    def watch(self, broker: Broker, admission: Admission) -> None:
        """Read the broker's own counts at each scrape from now on."""
        self.registry.register(_BrokerCollector(broker, admission))

    # ---- Observer: the hot paths ---------------------------------------------------------------------

    def committed(self, calls: int, seconds: float, durable: bool) -> None:
        self._batch.observe(calls)
        self._commit[durable].observe(seconds)

    def leased(self, waits_ms: Sequence[int]) -> None:
        for ms in waits_ms:
            self._queue_wait.observe(max(ms, 0) / 1000)

    def attempts_ended(self, ran_ms: Sequence[int]) -> None:
        for ms in ran_ms:
            self._lease.observe(max(ms, 0) / 1000)


class _BrokerCollector(Collector):
    """The figures the broker keeps anyway, as metric families, read when scraped."""

    def __init__(self, broker: Broker, admission: Admission) -> None:
        self._broker = broker
        self._admission = admission

    def collect(self) -> Iterator[Metric]:
        broker, admission = self._broker, self._admission
        jobs = GaugeMetricFamily(
            "gridd_jobs", "Jobs by queue and state (as gridd status counts them).", labels=["queue", "state"]
        )
        for queue, by_state in sorted(broker.counts.items()):
            for state in tr.STATES:
                jobs.add_metric([queue, state], by_state.get(state, 0))
        yield jobs
        yield CounterMetricFamily("gridd_jobs_submitted", "Jobs submitted since the broker started.", broker.submitted)
        ended = CounterMetricFamily(
            "gridd_completions",
            "Attempts ended since start, by what became of their job (requeued: it will run again).",
            labels=["outcome"],
        )
        for outcome in (JobState.SUCCEEDED, JobState.FAILED, "requeued", JobState.CANCELLED):
            ended.add_metric([outcome], broker.attempts_ended.get(outcome, 0))
        yield ended
        refused = CounterMetricFamily(
            "gridd_completions_refused",
            "Results refused: for a lease no longer current (stale) or granted to another worker (foreign).",
            labels=["reason"],
        )
        refused.add_metric(["stale"], broker.stale_completions)
        refused.add_metric(["foreign"], broker.foreign_completions)
        yield refused
        workers = GaugeMetricFamily("gridd_workers", "Connected workers by state.", labels=["state"])
        by_state = dict.fromkeys(WORKER_STATES, 0)
        for link in broker.workers.all():
            by_state[link.state] = by_state.get(link.state, 0) + 1
        for state, n in by_state.items():
            workers.add_metric([state], n)
        yield workers
        yield GaugeMetricFamily("gridd_connections_open", "Peer connections open now.", admission.connections)
        yield CounterMetricFamily(
            "gridd_connections_refused",
            "Connections closed at once by the caps on unauthenticated peers.",
            admission.refused,
        )
        yield CounterMetricFamily(
            "gridd_event_subscribers_dropped",
            "Event subscribers dropped for falling too far behind.",
            broker.hub.dropped,
        )


async def serve_metrics(
    address: str, registry: CollectorRegistry, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Serve GET /metrics on `address` (HOST:PORT; port 0: any free one) until cancelled; reports the
    bound port. An address that cannot be bound (in use) is a CannotListen, before anything is served."""
    host, port = parse_address(address)
    try:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    except OSError as exc:
        raise CannotListen(f"cannot serve metrics on {address} (--metrics): {exc.strerror or exc}") from None
    async with listener, anyio.create_task_group() as tg:
        bound = listener.extra(SocketAttribute.local_port)
        log.info("metrics.listening", host=host, port=bound, path="/metrics")
        task_status.started(bound)
        for one in listener.listeners:
            tg.start_soon(accept_loop, cast(SocketListener, one), tg, lambda s: _answer(s, registry))


async def _answer(stream: SocketStream, registry: CollectorRegistry) -> None:
    """One request, one response, then close (HTTP/1.1 with Connection: close)."""
    async with stream:
        with (
            anyio.move_on_after(REQUEST_TIMEOUT_S),
            contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError),
        ):
            head = await _read_head(stream)
            if head is not None:
                await stream.send(_respond(head, registry))


async def _read_head(stream: SocketStream) -> bytes | None:
    """The request line and headers, or None if they do not come in MAX_REQUEST_BYTES."""
    data = b""
    while b"\r\n\r\n" not in data:  # ends: each turn reads at least a byte, and at most MAX_REQUEST_BYTES
        if len(data) > MAX_REQUEST_BYTES:
            return None
        data += await stream.receive(MAX_REQUEST_BYTES)
    return data.split(b"\r\n\r\n", 1)[0]


def _respond(head: bytes, registry: CollectorRegistry) -> bytes:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    method, path = (parts[0], parts[1].split("?", 1)[0]) if len(parts) == 3 else ("", "")
    if method not in ("GET", "HEAD"):
        return _http(405, b"only GET\n", "text/plain; charset=utf-8")
    if path != "/metrics":
        return _http(404, b"metrics are at /metrics\n", "text/plain; charset=utf-8")
    accept = next((line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("accept:")), "")
    encoder, content_type = choose_encoder(accept)
    try:
        body = encoder(registry)
    except Exception:  # a bug of ours: the scraper hears 500, the broker goes on
        log.exception("metrics.failed")
        return _http(500, b"the broker could not collect its metrics; see its log\n", "text/plain; charset=utf-8")
    return _http(200, body if method == "GET" else b"", content_type, len(body))


def _http(status: int, body: bytes, content_type: str, length: int | None = None) -> bytes:
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body

"""One broker connection kept open for the pages of one credential, and the state it reads for them.

The connection subscribes to the event stream, so the job counts per queue and state stay exact from one
snapshot plus the events after it (each job event names its queue, its new state and the one it left).
Workers and the newest jobs are asked for at each page refresh. The connection is reopened when it ends
(the broker restarted or dropped us; of several brokers, the next that answers: gridd/client/addresses.py);
meanwhile `reason` says why there is none. `address` is the broker that answered.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

import anyio
import structlog

from gridd.client.api import Client
from gridd.client.backoff import Backoff
from gridd.client.connection import open_connection
from gridd.printable import printable
from gridd.protocol.errors import AuthFailed, GriddError
from gridd.protocol.messages import Event, JobView, WorkerView

log = structlog.get_logger()

# Between reconnects: from a quarter of a second up to a second, so a restarted broker is seen within about one.
RETRY_FIRST_S, RETRY_MAX_S = 0.25, 1.0
REQUEST_TIMEOUT_S = 10.0
NEWEST_JOBS = 50


class Unavailable(Exception):
    """No broker connection now; the message is the one line the page shows."""


class BrokerView:
    """The grid as one credential sees it. `run` keeps the connection until cancelled."""

    def __init__(self, address: Callable[[], str], token: str, *, insecure: bool) -> None:
        self._address = address  # asked again at each reconnect: the broker may come back on another port
        self._token = token
        self._insecure = insecure
        self.client: Client | None = None
        self.address = ""
        self.reason = "connecting to the broker"
        self.refused = False  # the broker said no to the credential (not: it could not be reached)
        self.counts: dict[str, dict[str, int]] = {}
        self.tried = anyio.Event()  # set once the first attempt connected or failed

    async def run(self) -> None:
        backoff = Backoff(RETRY_FIRST_S, RETRY_MAX_S)
        while True:
            address = self._address()
            try:
                async with open_connection(
                    address, self._token, role="client", name="gridd-web", insecure=self._insecure
                ) as connection:
                    client = Client(connection)
                    snapshot, events = await client.subscribe()
                    self.counts = {q: dict(by_state) for q, by_state in snapshot.queues.items()}
                    if self.address and connection.address != self.address:
                        log.info("web.broker_moved", **{"from": self.address, "to": connection.address})
                    self.client, self.address, self.refused = client, connection.address, False
                    self.tried.set()
                    backoff.reset()
                    log.info("web.connected", broker=connection.address)
                    async for event in events:
                        self._apply(event)
            except AuthFailed as exc:
                self.reason, self.refused = str(exc), True
            except GriddError as exc:
                self.reason = str(exc)
            except (OSError, ValueError) as exc:  # a malformed credential or address
                self.reason = f"cannot use the broker at {address}: {exc}"
            except Exception as exc:  # the page keeps serving and says so; the log has the traceback
                log.exception("web.connection_failed", broker=address)
                self.reason = f"lost the broker at {address}: {type(exc).__name__}: {exc}"
            finally:
                self.client = None
            log.warning("web.disconnected", broker=address, reason=self.reason)
            self.tried.set()
            await backoff.wait()

    def _apply(self, event: Event) -> None:
        """Move one job from the state it left to its new one (a new job: only in; a purged one: only out)."""
        if not event.kind.startswith("job.") or event.queue is None:
            return
        by_state = self.counts.setdefault(event.queue, {})
        if event.previous is not None:
            by_state[event.previous] = max(0, by_state.get(event.previous, 0) - 1)
        if event.state is not None and event.kind != "job.purged":
            by_state[event.state] = by_state.get(event.state, 0) + 1

    async def state(self) -> dict[str, Any]:
        """What /api/state answers; Unavailable when there is no connection or the broker does not answer."""
        client = self.client
        if client is None:
            raise Unavailable(self.reason)
        try:
            with anyio.fail_after(REQUEST_TIMEOUT_S):
                workers = await client.workers()
                jobs = await client.jobs(limit=NEWEST_JOBS)
        except TimeoutError:
            raise Unavailable(f"the broker at {self.address} did not answer within {REQUEST_TIMEOUT_S:.0f}s") from None
        except GriddError as exc:
            raise Unavailable(str(exc)) from None
        counts = {q: {s: n for s, n in sorted(by.items()) if n} for q, by in sorted(self.counts.items())}
        return {
            "broker": self.address,
            "counts": {q: by for q, by in counts.items() if by},
            "workers": [_worker(w) for w in sorted(workers, key=lambda w: w.name)],
            "jobs": [_job(j) for j in jobs],
        }


def _worker(w: WorkerView) -> dict[str, Any]:
    return {
        "name": printable(w.name),
        "host": printable(w.host),
        "state": w.state if w.connected else "disconnected",
        "slots": w.slots,
        "running": w.running,  # a count of jobs, not a job state
        "queues": [printable(q) for q in w.queues],
    }


def _job(j: JobView) -> dict[str, Any]:
    command = f"task {j.task}" if j.task else shlex.join(j.argv)
    return {
        "id": j.id,
        "state": j.state,
        "queue": printable(j.queue),
        "owner": printable(j.owner or ""),
        "worker": printable(j.worker or ""),
        "exit_code": j.exit_code,
        "command": printable(command),
    }

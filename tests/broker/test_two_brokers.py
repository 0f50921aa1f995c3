"""Two brokers on one PostgreSQL database serve one grid: what happens through one is seen through the other
as it commits (LISTEN/NOTIFY, no polling loop): a job submitted through B wakes a worker waiting on A, a
`wait` on A ends when a worker of B finishes the job, and A's event stream and counts include B's jobs."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from gridd.client import connect
from gridd.protocol.errors import AuthFailed
from gridd.protocol.messages import JobSpec
from gridd.protocol.states import JobState
from tests.conftest import client_of, running_broker, running_worker

DEADLINE_S = 20


async def test_a_job_submitted_through_one_broker_runs_on_a_worker_waiting_on_the_other(tmp_path: Path) -> None:
    async with (
        running_broker(tmp_path / "a") as a,
        running_broker(tmp_path / "b") as b,
        running_worker(tmp_path / "w", a.addr, slots=1),
        client_of(a) as on_a,
        client_of(b) as on_b,
    ):
        with anyio.fail_after(DEADLINE_S):
            job = await on_b.submit(["sh", "-c", "echo ran-through-a"])
            # The worker is on A alone: only A's dispatcher can lease it to it, and A heard of the job from B.
            [view] = await on_b.wait([job])
        assert view.state == JobState.SUCCEEDED
        assert view.worker == "w1"
        assert (await on_a.output(job))[0] == b"ran-through-a\n"


async def test_a_wait_on_one_broker_ends_when_a_worker_of_the_other_finishes_the_job(tmp_path: Path) -> None:
    async with (
        running_broker(tmp_path / "a") as a,
        running_broker(tmp_path / "b") as b,
        client_of(a) as on_a,
    ):
        with anyio.fail_after(DEADLINE_S):
            job = await on_a.submit(["true"])
            ended = anyio.Event()
            done: list[str] = []

            async def wait_on_a() -> None:
                [view] = await on_a.wait([job])
                done.append(view.state)
                ended.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_on_a)
                async with running_worker(tmp_path / "w", b.addr, slots=1):
                    await ended.wait()  # the job runs through B; the wait on A must hear of it
        assert done == [JobState.SUCCEEDED]


async def test_events_and_counts_on_one_broker_include_what_happens_through_the_other(tmp_path: Path) -> None:
    async with (
        running_broker(tmp_path / "a") as a,
        running_broker(tmp_path / "b") as b,
        client_of(a) as on_a,
        client_of(b) as on_b,
    ):
        with anyio.fail_after(DEADLINE_S):
            snapshot, events = await on_a.subscribe()
            ids = await on_b.submit_many([JobSpec(argv=["true"], queue="q")] * 3)
            await on_b.hold(ids[0])
            seen: list[tuple[str, str | None]] = []
            async for event in events:
                if event.job_id in ids:
                    seen.append((event.kind, event.job_id))
                if len(seen) == 4:
                    break
            status = await on_a.status()
        assert snapshot.queues == {}
        assert seen == [("job.submitted", i) for i in ids] + [("job.held", ids[0])]
        assert status.counts[JobState.QUEUED] == 2
        assert status.counts[JobState.HELD] == 1


async def test_a_job_in_a_lane_one_broker_never_saw_is_leased_by_it_once_submitted_through_the_other(
    tmp_path: Path,
) -> None:
    """A --require'd job is in a lane of its own; the broker of the worker learns it from the store."""
    async with (
        running_broker(tmp_path / "a") as a,
        running_broker(tmp_path / "b") as b,
        running_worker(tmp_path / "w", a.addr, slots=1, tags={"gpu": "1"}),
        client_of(b) as on_b,
    ):
        with anyio.fail_after(DEADLINE_S):
            [job] = await on_b.submit_many([JobSpec(argv=["true"], requires={"gpu": "1"})])
            [view] = await on_b.wait([job])
        assert (view.state, view.worker) == (JobState.SUCCEEDED, "w1")


async def test_a_token_revoked_through_one_broker_has_its_connections_to_the_other_closed(tmp_path: Path) -> None:
    async with (
        running_broker(tmp_path / "a") as a,
        running_broker(tmp_path / "b") as b,
        client_of(a) as admin,
    ):
        with anyio.fail_after(DEADLINE_S):
            credential, _ = await admin.create_token("ci", "submit")
            async with connect(b.addr, credential) as ci:
                job = await ci.submit(["true"], queue="nobody-serves-this")  # never finishes: the wait stays
                closed = anyio.Event()

                async def wait_on_b() -> None:
                    with pytest.raises(AuthFailed, match="token 'ci' was revoked"):
                        await ci.wait([job])
                    closed.set()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(wait_on_b)
                    await ci.status()  # a round trip after the wait was sent: it is in flight at B
                    await admin.revoke_token("ci")  # through A
                    await closed.wait()

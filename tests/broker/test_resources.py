"""Resources against a real broker and real workers: a job asking for cpus, memory or tags only runs on a
worker that has them, a worker's slots are accounted by what its jobs asked for, a job that no connected
worker can run says why in `show`, and lanes (requirements) appear to waiting workers and survive a restart."""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

import anyio

from gridd.broker.matching import Budget
from gridd.broker.store import Ask
from gridd.client import Client
from gridd.client.connection import open_connection
from gridd.protocol.messages import JobSpec, LeaseRef, RegisterWorker, RequestJobs
from tests.broker.test_store import TTL_MS, store_at, submit
from tests.clock import FakeClock
from tests.conftest import TOKEN, client_of, running_broker, running_worker
from tests.polling import eventually
from tests.tasks import sample

# A job that says it started (a marker file) and ends when the test lets it (its go file).
HOLD = (
    "import os, pathlib, sys, time\n"
    "d = pathlib.Path(sys.argv[1]); me = os.environ['GRIDD_JOB_ID']\n"
    "(d / f'started-{me}').touch()\n"
    "t = time.monotonic() + 60\n"
    "while not (d / f'go-{me}').exists() and time.monotonic() < t:\n"
    "    time.sleep(0.02)\n"
)


def hold(marks: Path, **kw: Any) -> JobSpec:
    return JobSpec(argv=[sys.executable, "-c", HOLD, str(marks)], **kw)


async def submit_one(client: Client, spec: JobSpec) -> str:
    (job_id,) = await client.submit_many([spec])
    return job_id


def started(marks: Path, *job_ids: str) -> bool:
    return all((marks / f"started-{j}").exists() for j in job_ids)


async def state_of(client: Client, job_id: str) -> str:
    job, _ = await client.show(job_id)
    return job.state


# ---- cpus and memory accounting -------------------------------------------------------------------------


async def test_a_two_cpu_worker_runs_two_one_cpu_jobs_at_once_but_a_two_cpu_job_alone(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    async with (
        running_broker(tmp_path) as b,
        client_of(b) as client,
        running_worker(tmp_path, b.addr, slots=2, cpus=2) as agent,
    ):
        with anyio.fail_after(60):
            big = await submit_one(client, hold(marks, cpus=2))
            small = await client.submit_many([hold(marks), hold(marks)])

            async def big_started() -> bool:
                return started(marks, big)

            await eventually(big_started, within_s=20)
            # Two slots, but its two cpus are taken: it holds the big job only and leased nothing more.
            assert agent.running == 1
            assert [await state_of(client, j) for j in small] == ["queued", "queued"]
            (marks / f"go-{big}").touch()

            async def both_small_started() -> bool:
                return started(marks, *small)

            await eventually(both_small_started, within_s=20)  # at once: neither has been let go
            assert agent.running == 2
            big2 = await submit_one(client, hold(marks, cpus=2))
            (marks / f"go-{small[0]}").touch()

            async def first_small_done() -> bool:
                return await state_of(client, small[0]) == "succeeded"

            await eventually(first_small_done, within_s=20)
            assert not started(marks, big2)  # one cpu free: not enough
            (marks / f"go-{small[1]}").touch()

            async def big2_started() -> bool:
                return started(marks, big2)

            await eventually(big2_started, within_s=20)
            (marks / f"go-{big2}").touch()
            views = await client.wait([big, *small, big2])
    assert [v.state for v in views] == ["succeeded"] * 4


async def test_memory_is_accounted_like_cpus_one_job_too_many_waits(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    async with (
        running_broker(tmp_path) as b,
        client_of(b) as client,
        running_worker(tmp_path, b.addr, slots=2, cpus=2, memory_mb=1000) as agent,
    ):
        with anyio.fail_after(60):
            first, second = await client.submit_many([hold(marks, memory_mb=600), hold(marks, memory_mb=600)])

            async def first_started() -> bool:
                return started(marks, first)

            await eventually(first_started, within_s=20)
            assert agent.running == 1 and await state_of(client, second) == "queued"
            (marks / f"go-{first}").touch()

            async def second_started() -> bool:
                return started(marks, second)

            await eventually(second_started, within_s=20)
            (marks / f"go-{second}").touch()
            views = await client.wait([first, second])
    assert [v.state for v in views] == ["succeeded"] * 2


async def test_a_lease_takes_the_best_jobs_that_fit_the_budget_together_and_each_the_worker(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        ids = await submit(
            store,
            clock,
            JobSpec(argv=["a"], memory_mb=600, priority=3),
            JobSpec(argv=["b"], memory_mb=600, priority=2),
            JobSpec(argv=["c"], memory_mb=300, priority=1),
            JobSpec(argv=["d"], cpus=8),
        )
        lanes = [("default", "")]
        # Free: 1000 MiB of a 4,000 MiB, 4-cpu worker. a fits, b no longer does, c does; d is bigger
        # than the worker and is skipped in the index.
        budget = Budget(cpus=4, memory_mb=1000, job_cpus=4, job_memory_mb=1000)
        got = (await store.lease_for([Ask("w1", lanes, 4, budget)], clock.now_ms(), TTL_MS))[0]
        assert [j.job_id for j in got] == [ids[0], ids[2]]
        small = Budget(cpus=4, memory_mb=500, job_cpus=4, job_memory_mb=500)
        assert (await store.lease_for([Ask("w1", lanes, 4, small)], clock.now_ms(), TTL_MS))[0] == []
        # An 8-cpu worker: b and d together ask for 9 cpus, so b alone; with 9 free, both.
        eight = Budget(cpus=8, memory_mb=None, job_cpus=8, job_memory_mb=None)
        got = (await store.lease_for([Ask("w2", lanes, 4, eight)], clock.now_ms(), TTL_MS))[0]
        assert [j.job_id for j in got] == [ids[1]]
        await store.return_leases("w2", [LeaseRef(job_id=got[0].job_id, lease=got[0].lease)])
        nine = Budget(cpus=9, memory_mb=None, job_cpus=8, job_memory_mb=None)
        got = (await store.lease_for([Ask("w2", lanes, 4, nine)], clock.now_ms(), TTL_MS))[0]
        assert [j.job_id for j in got] == [ids[1], ids[3]]


async def test_one_lease_call_serves_several_workers_in_the_order_they_asked(tmp_path: Path) -> None:
    """The dispatcher asks for every waiting worker at once. Each takes the best jobs left after those
    before it; a lane the small worker emptied of what fits it is still read for the big one."""
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        ids = await submit(
            store,
            clock,
            JobSpec(argv=["a"], priority=3),
            JobSpec(argv=["big"], cpus=4, priority=2),
            JobSpec(argv=["b"], priority=1),
            JobSpec(argv=["c"]),
        )
        lanes = [("default", "")]
        one_cpu = Budget(cpus=1, memory_mb=None, job_cpus=1, job_memory_mb=None)
        small = Budget(cpus=None, memory_mb=None, job_cpus=1, job_memory_mb=None)
        large = Budget(cpus=8, memory_mb=None, job_cpus=8, job_memory_mb=None)
        asks = [
            Ask("w1", lanes, 2, one_cpu),  # a, and then its one cpu is spent
            Ask("w2", lanes, 1, small),  # b
            Ask("w3", lanes, 2, small),  # c, the last job of one cpu: the lane is drained for small ones
            Ask("w4", lanes, 2, small),  # nothing
            Ask("w5", lanes, 4, large),  # big, which no small one could take
        ]
        granted = await store.lease_for(asks, clock.now_ms(), TTL_MS)
        assert [[j.job_id for j in jobs] for jobs in granted] == [[ids[0]], [ids[2]], [ids[3]], [], [ids[1]]]
        view, _ = await store.get_job(ids[1])
        assert view.worker == "w5"


# ---- tags ---------------------------------------------------------------------------------------------------


async def test_a_job_requiring_a_tag_goes_only_to_the_worker_that_has_it_even_a_lane_new_to_it(
    tmp_path: Path,
) -> None:
    async with (
        running_broker(tmp_path) as b,
        client_of(b) as client,
        running_worker(tmp_path, b.addr, name="plain", slots=2),
        running_worker(tmp_path, b.addr, name="gpu", slots=2, tags={"gpu": "1"}),
    ):
        with anyio.fail_after(60):

            async def both_waiting() -> bool:
                return len(b.broker.dispatcher._pending) == 2

            await eventually(both_waiting, within_s=20)
            # Both long-poll already; gpu=1 is a lane neither has seen: it still reaches the gpu worker.
            needs_gpu = await client.submit_many([JobSpec(argv=["true"], requires={"gpu": "1"})] * 4)
            anywhere = await client.submit_many([JobSpec(argv=["true"], requires={"os": platform.system().lower()})])
            views = await client.wait(needs_gpu + anywhere)
    assert [v.state for v in views] == ["succeeded"] * 5
    assert {v.worker for v in views[:4]} == {"gpu"}


async def test_lanes_are_remembered_across_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    async with store_at(tmp_path) as store:
        await submit(store, clock, JobSpec(argv=["x"], requires={"zone": "b", "gpu": "1"}, queue="q"))
    async with store_at(tmp_path) as store:
        assert ("q", ";gpu=1;zone=b") in await store.known_lanes()


# ---- a job nobody can run says so ---------------------------------------------------------------------------


async def test_show_says_when_no_connected_worker_can_run_a_job_until_one_that_can_connects(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with anyio.fail_after(60):
            job_id = await submit_one(client, JobSpec(argv=["true"], cpus=4))
            shown, _ = await client.show(job_id)
            assert shown.unmatched == "no connected worker can run it: no worker is connected"
            async with running_worker(tmp_path, b.addr, name="small", slots=1, cpus=2, memory_mb=512):
                memory_job = await submit_one(client, JobSpec(argv=["true"], memory_mb=1024))
                tagged = await submit_one(client, JobSpec(argv=["true"], requires={"gpu": "1"}))
                other_queue = await submit_one(client, JobSpec(argv=["true"], queue="gpu"))

                async def registered() -> bool:
                    return len(await client.workers()) == 1

                await eventually(registered)
                why = {j: (await client.show(j))[0].unmatched for j in (job_id, memory_job, tagged, other_queue)}
                assert why[job_id] == (
                    "no connected worker can run it: it asks for 4 cpus,"
                    " the most any worker serving queue 'default' has is 2"
                )
                assert why[memory_job] == (
                    "no connected worker can run it: it asks for 1024 MiB of memory,"
                    " the most any worker serving queue 'default' has is 512 MiB"
                )
                assert (
                    why[tagged] == "no connected worker can run it: no worker serving queue 'default' has the tag gpu=1"
                )
                assert why[other_queue] == "no connected worker can run it: no worker serves queue 'gpu'"
                async with running_worker(tmp_path, b.addr, name="big", slots=1, cpus=4):
                    (view,) = await client.wait([job_id])
    assert view.state == "succeeded" and view.worker == "big" and view.unmatched is None


# ---- the Python client ----------------------------------------------------------------------------------------


async def test_the_python_client_and_task_options_ask_for_resources_too(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with anyio.fail_after(30):
            job_id = await client.submit(["true"], cpus=2, memory_mb=300, requires={"gpu": "1"})
            shown, _ = await client.show(job_id)
            handle = await client.submit_task(sample.add.with_options(cpus=3, requires={"zone": "b"}), 1)
            task_job, _ = await client.show(handle.id)
    assert (shown.cpus, shown.memory_mb, shown.requires) == (2, 300, {"gpu": "1"})
    assert (task_job.cpus, task_job.memory_mb, task_job.requires, task_job.task) == (
        3,
        0,
        {"zone": "b"},
        "tests.tasks.sample:add",
    )
    assert task_job.unmatched == "no connected worker can run it: no worker is connected"


# ---- older peers ----------------------------------------------------------------------------------------------


async def test_a_worker_that_announces_no_resources_is_unlimited_and_a_newer_request_supersedes_its_older(
    tmp_path: Path,
) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with anyio.fail_after(30):
            async with open_connection(b.addr, TOKEN, role="worker", name="old") as conn:
                await conn.request(lambda rid: RegisterWorker(rid=rid, host="h", slots=1, queues=["default"]))
                async with anyio.create_task_group() as tg:
                    first: list[Any] = []

                    async def ask_first() -> None:
                        first.append(await conn.request(lambda rid: RequestJobs(rid=rid, max_jobs=1, cpus=1)))

                    tg.start_soon(ask_first)

                    async def waiting() -> bool:
                        return len(b.broker.dispatcher._pending) == 1

                    await eventually(waiting)
                    job_id = await submit_one(client, JobSpec(argv=["true"], cpus=64, memory_mb=2**20))
                    # The first request's budget (1 cpu) does not fit it; the newer one's (none) does.
                    second = await conn.request(lambda rid: RequestJobs(rid=rid, max_jobs=1))
            assert first[0].jobs == []  # answered empty, superseded
            assert [j.job_id for j in second.jobs] == [job_id]

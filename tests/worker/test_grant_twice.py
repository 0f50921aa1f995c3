"""A worker that hears the same grant twice (the same job under the same lease: a late reply to a lease
request it had given up, beside the reply to the one that replaced it) runs the job once, and the broker
records one result; before, the second copy ran too and its result was refused as stale."""

from __future__ import annotations

from pathlib import Path

import anyio

from gridd.protocol.states import JobState
from tests.conftest import client_of, running_broker, running_worker
from tests.polling import eventually


async def test_a_grant_heard_twice_runs_its_job_once(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with anyio.fail_after(30):
            gate = tmp_path / "gate"
            script = f"echo ran >> {marks}; while [ ! -e {gate} ]; do sleep 0.02; done"
            job = await client.submit(["sh", "-c", script])
            async with running_worker(tmp_path, b.addr, slots=2) as agent:
                jobs = agent._jobs  # the worker's held jobs: the grant is given to them again, as a late reply does

                async def running() -> bool:
                    return marks.exists() and bool(jobs.held_leases())

                await eventually(running)
                [held] = [h.job for h in jobs._held.values()]
                jobs.hold([held])  # the same job, the same lease, again
                gate.touch()
                [view] = await client.wait([job])
        assert view.state == JobState.SUCCEEDED
        assert marks.read_text() == "ran\n"  # once
        assert (await client.show(job))[0].attempts == 1

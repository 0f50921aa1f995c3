"""`wait` answers with the jobs as they finished, even when one finishes while the broker reads it."""

from __future__ import annotations

from pathlib import Path

import anyio

from tests.conftest import client_of, running_broker, running_worker


async def test_wait_never_returns_a_job_still_running(tmp_path: Path) -> None:
    """Submit-then-wait, many times over on an idle grid: a job that finished during the broker's first
    read of it used to come back as `running` (about one in a hundred)."""
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, slots=2), client_of(b) as client:
        with anyio.fail_after(60):
            states = []
            for _ in range(300):
                (job,) = await client.wait([await client.submit(["true"])])
                states.append(job.state)
    assert set(states) == {"succeeded"}

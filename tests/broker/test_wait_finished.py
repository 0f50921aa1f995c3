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
            states, ids = [], []
            for _ in range(300):
                ids.append(await client.submit(["true"]))
                (job,) = await client.wait(ids[-1:])
                states.append(job.state)
            # Some finished long ago, one not yet: the wait returns once that one has, with all of them.
            jobs = await client.wait([*ids[:2], await client.submit(["true"])])
    assert set(states) == {"succeeded"}
    assert [j.state for j in jobs] == ["succeeded"] * 3

"""`wait` answers with finished jobs only, even when the job finishes while the broker reads it."""

from __future__ import annotations

import anyio

from gridd.client import connect
from tests.e2e.conftest import TOKEN, Grid


def test_wait_never_answers_with_a_job_that_has_not_finished(grid: Grid) -> None:
    # Short jobs waited for one at a time hit the window often (the job finishing during the broker's
    # first read of it): before the fix, one run in two saw a `running` job within 300 rounds.
    addr = grid.start_broker()
    grid.start_worker("W", slots=2)
    grid.wait_worker_connected("W")

    async def rounds() -> list[str]:
        states = []
        async with connect(addr, TOKEN) as client:
            with anyio.fail_after(60):
                for _ in range(300):
                    (job,) = await client.wait([await client.submit(["true"])])
                    states.append(job.state)
        return states

    assert set(anyio.run(rounds)) == {"succeeded"}

"""A worker keeps taking work while work is queued: a burst of short jobs all finish."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.e2e.conftest import TOKEN, Grid
from tests.polling import wait_until

SUBMIT_MANY = textwrap.dedent(
    """
    import sys, anyio
    from gridd.client import connect
    from gridd.protocol.messages import JobSpec

    async def main(addr, token, n):
        async with connect(addr, token) as client:
            ids = await client.submit_many([JobSpec(argv=["true"]) for _ in range(int(n))])
        print("\\n".join(ids))

    anyio.run(main, *sys.argv[1:])
    """
)


def test_a_two_slot_worker_runs_a_burst_of_300_short_jobs_to_the_end(grid: Grid) -> None:
    addr = grid.start_broker()
    grid.start_worker("W", slots=2)
    grid.wait_worker_connected("W")
    out = subprocess.run(
        [sys.executable, "-c", SUBMIT_MANY, addr, TOKEN, "300"], capture_output=True, timeout=60, env=grid.env
    )
    assert out.returncode == 0, out.stderr
    ids = out.stdout.decode().split()
    assert len(ids) == 300
    last: dict[str, int] = {}

    def all_done() -> bool:
        last.update(grid.json("status")["counts"])
        return last.get("succeeded") == 300

    try:
        wait_until(all_done, 20, "300 jobs to succeed", every_s=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: counts {last}, workers {grid.json('workers')}") from None

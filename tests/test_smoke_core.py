"""The core path end to end in one process: submit, a worker runs it, the result comes back."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from tests.conftest import client_of, running_broker, running_worker


async def test_a_submitted_command_runs_and_its_output_and_status_are_recorded(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr), client_of(b) as client:
        job_id = await client.submit([sys.executable, "-c", "import sys; print('hi'); sys.exit(3)"], max_attempts=1)
        with anyio.fail_after(20):
            (job,) = await client.wait([job_id])
        assert job.state == "failed"
        assert job.exit_code == 3
        assert (await client.output(job_id))[0] == b"hi\n"

"""`submit --wait` shows what the job writes while it runs, like the command run here would."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream

from tests.conftest import TOKEN, running_broker, running_worker


async def _read_until(stream: ByteReceiveStream, needle: bytes, seen: bytearray) -> None:
    with anyio.fail_after(15):
        while needle not in seen:
            seen.extend(await stream.receive())


async def test_submit_wait_prints_output_while_the_job_still_runs_and_all_of_it_once(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    script = f"echo first; echo warn >&2; while [ ! -e {gate} ]; do sleep 0.05; done; echo second"
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, slots=1):
        env = {**os.environ, "GRIDD_TOKEN": TOKEN, "GRIDD_BROKER": b.addr, "HOME": str(tmp_path)}
        async with await anyio.open_process(
            [sys.executable, "-m", "gridd", "submit", "--wait", "--", "sh", "-c", script], env=env
        ) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            out, err = bytearray(), bytearray()
            await _read_until(proc.stdout, b"first\n", out)  # the job is still blocked on the gate here
            await _read_until(proc.stderr, b"warn\n", err)
            gate.touch()
            with anyio.fail_after(15):
                async for data in proc.stdout:
                    out.extend(data)
                async for data in proc.stderr:
                    err.extend(data)
                await proc.wait()
    assert proc.returncode == 0
    assert bytes(out) == b"first\nsecond\n"  # every byte once, in order
    assert err.count(b"warn\n") == 1

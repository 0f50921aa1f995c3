"""Output is capped at both ends: a worker spools at most max_output_bytes of each stream to its disk however
much a job writes (the first 1 MiB is kept, the rest drained and dropped), and the broker keeps at most its
own limit of whatever a worker sends, marked truncated."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio

from gridd.client.connection import open_connection
from gridd.protocol.messages import AppendOutput, CompleteJobs, JobResult, OutputChunk, RegisterWorker, RequestJobs
from tests.conftest import TOKEN, client_of, running_broker, running_worker
from tests.polling import eventually

MIB = 1024 * 1024
# 20 MiB of numbered lines to stdout and 3 MiB to stderr, say so (argv[2]), then wait for the test's go (argv[1]).
WRITER = """
import os, sys, time
for i in range(20 * 1024 * 1024 // 16):
    sys.stdout.write("%015d\\n" % i)
sys.stdout.flush()
sys.stderr.write("e" * (3 * 1024 * 1024))
sys.stderr.flush()
open(sys.argv[2], "w").close()
for _ in range(3000):
    if os.path.exists(sys.argv[1]):
        break
    time.sleep(0.01)
"""


def spool_sizes(work_dir: Path) -> list[int]:
    """Sizes of the files this process holds open under `work_dir` (the worker runs in this process;
    its spools are anonymous, so they are found through /proc)."""
    sizes = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(work_dir)):
                sizes.append(os.stat(f"/proc/self/fd/{fd}").st_size)
        except OSError:
            continue
    return sizes


async def test_a_job_writing_20_mib_leaves_at_most_1_mib_spooled_and_logs_show_the_first_mib(tmp_path: Path) -> None:
    go = tmp_path / "go"
    expected = "".join(f"{i:015d}\n" for i in range(MIB // 16)).encode()
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr), client_of(b) as client:
        with anyio.fail_after(60):
            job_id = await client.submit([sys.executable, "-c", WRITER, str(go), str(tmp_path / "written")])

            async def written() -> bool:  # all of it written (the job waits): the spools are as big as they get
                return (tmp_path / "written").exists()

            await eventually(written, within_s=30)
            sizes = spool_sizes(tmp_path / "workers")
            go.touch()
            (view,) = await client.wait([job_id])
            stdout, stdout_cut = await client.output(job_id)
            stderr, stderr_cut = await client.output(job_id, "stderr")
            logs = await anyio.run_process(
                [sys.executable, "-m", "gridd", "logs", job_id, "--broker", b.addr],
                env={**os.environ, "GRIDD_TOKEN": TOKEN},
                check=False,
            )
    assert max(sizes) == MIB, sizes  # not 20 MiB
    assert view.state == "succeeded"
    assert (stdout, stdout_cut) == (expected, True)
    assert (stderr, stderr_cut) == (b"e" * MIB, True)
    assert logs.returncode == 0 and logs.stdout == expected
    assert logs.stderr.decode().strip() == f"gridd: job {job_id}'s stdout was truncated"


async def test_the_broker_cuts_what_a_worker_sends_past_its_limit_and_marks_it_truncated(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with anyio.fail_after(30):
            job_id = await client.submit(["true"])
            async with open_connection(b.addr, TOKEN, role="worker", name="raw") as conn:
                await conn.request(lambda rid: RegisterWorker(rid=rid, host="h", slots=1, queues=["default"]))
                leased = await conn.request(lambda rid: RequestJobs(rid=rid, max_jobs=1))
                (job,) = leased.jobs
                result = JobResult(
                    job_id=job.job_id,
                    lease=job.lease,
                    exit_code=0,
                    outcome="exited",
                    started_ms=1,
                    ended_ms=2,
                    stdout=b"o" * (3 * MIB),
                    stderr=b"small",
                )
                done = await conn.request(lambda rid: CompleteJobs(rid=rid, results=[result]))
            assert [o.code for o in done.outcomes] == [0]
            stdout, stdout_cut = await client.output(job_id)
            stderr, stderr_cut = await client.output(job_id, "stderr")
            (view,) = await client.wait([job_id])
    assert (len(stdout), stdout_cut) == (MIB, True)
    assert (stderr, stderr_cut) == (b"small", False)
    assert view.stdout_bytes == MIB


async def test_live_output_past_the_limit_is_not_relayed(tmp_path: Path) -> None:
    """A follower gets at most the first max_output_bytes of a stream, whatever the worker pushes."""
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with anyio.fail_after(30):
            job_id = await client.submit(["true"])
            async with open_connection(b.addr, TOKEN, role="worker", name="raw") as conn:
                await conn.request(lambda rid: RegisterWorker(rid=rid, host="h", slots=1, queues=["default"]))
                (job,) = (await conn.request(lambda rid: RequestJobs(rid=rid, max_jobs=1))).jobs
                got: list[OutputChunk] = []
                async with anyio.create_task_group() as tg:

                    async def follow() -> None:
                        async for chunk in client.follow_output(job_id):
                            got.append(chunk)

                    tg.start_soon(follow)
                    await eventually(lambda: _following(b))

                    def chunk(offset: int, size: int) -> OutputChunk:
                        return OutputChunk(
                            job_id=job_id, lease=job.lease, stream="stdout", offset=offset, data=b"x" * size
                        )

                    await conn.send(
                        AppendOutput(chunks=[chunk(0, MIB - 10), chunk(MIB - 10, 100), chunk(MIB, 5 * MIB)])
                    )

                    async def relayed() -> bool:
                        return sum(len(c.data) for c in got) >= MIB

                    await eventually(relayed)
                    tg.cancel_scope.cancel()
    assert [(c.offset, len(c.data)) for c in got] == [(0, MIB - 10), (MIB - 10, 10)]


async def _following(b: object) -> bool:
    return bool(b.broker.outputs._followers)  # type: ignore[attr-defined]

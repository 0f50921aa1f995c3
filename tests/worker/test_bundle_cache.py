"""The worker's bundle cache against a real broker and a real in-process agent: a download goes on from
a partial file, a damaged partial file is never taken as complete, and a bundle that cannot be fetched
fails the attempt with a message saying why."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gridd.client import bundles
from gridd.protocol.messages import JobSpec
from tests.conftest import client_of, running_broker, running_worker

pytestmark = pytest.mark.anyio

CHECK = "import hashlib,sys; print(*(hashlib.sha256(open(p,'rb').read()).hexdigest() for p in sys.argv[1:]))"


def _source(root: Path) -> tuple[Path, bytes, bytes]:
    src = root / "src"
    src.mkdir()
    big, small = os.urandom(9 * 1024 * 1024 + 17), os.urandom(5000)  # big: three pieces of 4 MiB
    (src / "big.bin").write_bytes(big)
    (src / "small.bin").write_bytes(small)
    return src, big, small


async def test_a_download_resumes_from_its_partial_file_and_a_damaged_one_is_fetched_again(tmp_path: Path) -> None:
    src, big, small = _source(tmp_path)
    partial = tmp_path / "workers" / "worker" / "w1.bundles" / "partial"  # where the agent below keeps them
    partial.mkdir(parents=True)
    (partial / hashlib.sha256(big).hexdigest()).write_bytes(big[: 5 * 1024 * 1024])  # a download cut short
    (partial / hashlib.sha256(small).hexdigest()).write_bytes(b"x" * 1000)  # garbage: a crash mid-write
    with capture_logs() as logs:
        async with running_broker(tmp_path) as b, client_of(b) as c:
            report = await bundles.push(c.connection, "data", src)
            assert (report.version, report.uploaded_files, report.uploaded_bytes) == (1, 2, len(big) + len(small))
            async with running_worker(tmp_path, b.addr):
                job = await c.submit(["python3", "-c", CHECK, "big.bin", "small.bin"], bundle="data")
                (view,) = await c.wait([job])
                out, _ = await c.output(job)
    assert view.state == "succeeded" and view.bundle == "data@1"
    assert out.decode().split() == [hashlib.sha256(big).hexdigest(), hashlib.sha256(small).hexdigest()]
    (event,) = [e for e in logs if e["event"] == "bundle.fetched"]
    resumed = len(big) - 5 * 1024 * 1024
    refetched = (len(small) - 1000) + len(small)  # the rest of the garbage, found damaged, then all of it
    assert (event["files"], event["bytes"]) == (2, resumed + refetched)
    assert [e["blob"] for e in logs if e["event"] == "bundle.damaged_download"] == [hashlib.sha256(small).hexdigest()]


async def test_a_bundle_that_cannot_be_fetched_fails_the_attempt_saying_why(tmp_path: Path) -> None:
    src, _, _ = _source(tmp_path)
    async with running_broker(tmp_path) as b, client_of(b) as c:
        await bundles.push(c.connection, "data", src)
        with sqlite3.connect(b.data_dir / "gridd.db") as db:  # the broker lost the content (a damaged disk)
            db.execute("DELETE FROM blobs")
        async with running_worker(tmp_path, b.addr):
            job = await c.submit(["true"], bundle="data", max_attempts=1)
            (view,) = await c.wait([job])
            _, attempts = await c.show(job)
            err, _ = await c.output(job, "stderr")
    assert view.state == "failed"
    assert (attempts[0].outcome, attempts[0].bundle) == ("error", "data@1")
    assert b"cannot fetch bundle data@1: no complete blob has id" in err


async def test_jobs_that_start_together_in_one_version_fetch_it_once(tmp_path: Path) -> None:
    src, big, _ = _source(tmp_path)
    with capture_logs() as logs:
        async with running_broker(tmp_path) as b, client_of(b) as c:
            await bundles.push(c.connection, "data", src)
            async with running_worker(tmp_path, b.addr, slots=4):
                spec = JobSpec(argv=["python3", "-c", CHECK, "big.bin"], bundle="data")
                views = await c.wait(await c.submit_many([spec] * 4))
                outs = [(await c.output(v.id))[0] for v in views]
    assert {v.state for v in views} == {"succeeded"}
    assert set(outs) == {hashlib.sha256(big).hexdigest().encode() + b"\n"}
    assert [(e["files"], e["cached"]) for e in logs if e["event"] == "bundle.fetched"] == [(2, 0)]

"""The worker's bundle cache against jobs that run as the worker's user (issue 16, items 11 and 16): a job
that rewrites the cache cannot change what the next job of that bundle runs, and content a bundle names
many times is written once per attempt."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gridd.client import bundles
from gridd.protocol.messages import BundleFile, PushBundle
from tests.conftest import client_of, running_broker, running_worker

pytestmark = pytest.mark.anyio

# The same size as "echo original\n", and the cache file's mtime put back: only its content tells.
VANDAL = (
    'chmod -R u+w "$1" && for f in "$1"/blobs/*/*; do'
    ' touch -r "$f" ref && echo "echo tampered" > "$f" && touch -r ref "$f"; done && echo vandalised'
)


def cache_of(tmp_path: Path) -> Path:
    return tmp_path / "workers" / "worker" / "w1.bundles"  # where running_worker's agent keeps it


async def test_a_job_that_rewrites_the_cache_does_not_change_what_the_next_job_runs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "run.sh").write_text("echo original\n")
    blob = hashlib.sha256(b"echo original\n").hexdigest()
    cached = cache_of(tmp_path) / "blobs" / blob[:2] / blob
    with capture_logs() as logs:
        async with running_broker(tmp_path) as b, client_of(b) as c:
            await bundles.push(c.connection, "app", src)
            async with running_worker(tmp_path, b.addr):
                first = await c.submit(["sh", "run.sh"], bundle="app")
                (view,) = await c.wait([first])
                assert view.state == "succeeded"
                # The cache is read-only to anyone who does not chmod it first.
                assert stat.S_IMODE(cached.stat().st_mode) == 0o444
                assert stat.S_IMODE(cached.parent.stat().st_mode) == 0o555
                assert stat.S_IMODE(cached.parent.parent.stat().st_mode) == 0o555
                vandal = await c.submit(["sh", "-c", VANDAL, "vandal", str(cache_of(tmp_path))], bundle="app")
                (view,) = await c.wait([vandal])
                assert view.state == "succeeded" and cached.read_bytes() == b"echo tampered\n"
                nexts = [await c.submit(["sh", "run.sh"], bundle="app") for _ in range(2)]
                views = await c.wait(nexts)
                outs = [(await c.output(job))[0] for job in nexts]
    assert [v.state for v in views] == ["succeeded"] * 2
    assert outs == [b"original\n"] * 2
    # Found out once, dropped, fetched again; sealed again as it was.
    assert [e["blob"] for e in logs if e["event"] == "bundle.damaged_cache"] == [blob]
    assert cached.read_bytes() == b"echo original\n" and stat.S_IMODE(cached.stat().st_mode) == 0o444


async def test_content_named_many_times_is_written_once_per_attempt(tmp_path: Path) -> None:
    data = os.urandom(1024 * 1024)
    blob = hashlib.sha256(data).hexdigest()
    src = tmp_path / "content.bin"
    src.write_bytes(data)
    # Sixty paths, one content: thirty executable, thirty not (one inode each way).
    files = [BundleFile(path=f"f{i:02d}", blob=blob, size=len(data), executable=i % 2 == 0) for i in range(60)]
    probe = (
        "import hashlib,os; s=[os.stat(f'f{i:02d}') for i in range(60)];"
        " print(len({x.st_ino for x in s}), sorted({x.st_nlink for x in s}),"
        " hashlib.sha256(open('f59','rb').read()).hexdigest())"
    )
    async with running_broker(tmp_path) as b, client_of(b) as c:
        await bundles.upload_file(c.connection, src, blob, len(data))
        pushed = await c.connection.request(lambda rid: PushBundle(rid=rid, name="many", files=files))
        assert (pushed.version, pushed.missing) == (1, [])
        async with running_worker(tmp_path, b.addr):
            job = await c.submit(["python3", "-c", probe], bundle="many")
            (view,) = await c.wait([job])
            out, err = await c.output(job)
    assert view.state == "succeeded", err
    assert out.decode().split() == ["2", "[30]", blob]

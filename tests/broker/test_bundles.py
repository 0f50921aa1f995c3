"""The broker's bundle versions over real TCP: no version names content the broker lacks, a manifest
equal to the latest makes no new version, and paths that could leave a job's directory are refused."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from gridd.client import bundles
from gridd.protocol.bundles import manifest_problem, path_problem
from gridd.protocol.errors import InvalidRequest, PayloadTooLarge, UnknownBundle
from gridd.protocol.messages import BLOB_CHUNK_BYTES, BundleFile, PushBundle, PutBlob
from tests.conftest import client_of, running_broker

pytestmark = pytest.mark.anyio


def _file(path: str, data: bytes = b"x") -> BundleFile:
    return BundleFile(path=path, blob=hashlib.sha256(data).hexdigest(), size=len(data))


async def test_a_push_names_the_missing_blobs_and_makes_a_version_only_once_all_are_there(tmp_path: Path) -> None:
    files = [_file("a.txt", b"alpha"), _file("b/c.txt", b"gamma")]
    async with running_broker(tmp_path) as b, client_of(b) as c:
        reply = await c.connection.request(lambda rid: PushBundle(rid=rid, name="n", files=files))
        assert (reply.version, reply.created, sorted(reply.missing)) == (0, False, sorted(f.blob for f in files))
        with pytest.raises(UnknownBundle):
            await bundles.list_versions(c.connection, "n")  # nothing was made
        for f, data in zip(files, (b"alpha", b"gamma"), strict=True):
            src = tmp_path / f.blob
            src.write_bytes(data)
            assert await bundles.upload_file(c.connection, src, f.blob, f.size) == len(data)
            assert await bundles.upload_file(c.connection, src, f.blob, f.size) == 0  # held: nothing travels
        first = await c.connection.request(lambda rid: PushBundle(rid=rid, name="n", files=files))
        again = await c.connection.request(lambda rid: PushBundle(rid=rid, name="n", files=files))
        view, got = await bundles.manifest(c.connection, "n")
    assert (first.version, first.created, again.version, again.created) == (1, True, 1, False)
    assert view.version == 1 and view.bytes == 10 and got == files and view.digest == first.digest


async def test_a_push_that_broke_off_sends_only_the_rest(tmp_path: Path) -> None:
    data = os.urandom(BLOB_CHUNK_BYTES + 1000)
    blob = hashlib.sha256(data).hexdigest()
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    async with running_broker(tmp_path) as b, client_of(b) as c:
        first = data[:BLOB_CHUNK_BYTES]  # the first piece arrived, then the pusher was cut off
        await c.connection.request(
            lambda rid: PutBlob(rid=rid, blob=blob, size=len(data), offset=0, data=first)  # noqa: B023
        )
        assert await bundles.upload_file(c.connection, src, blob, len(data)) == 1000


async def test_paths_that_could_leave_the_job_directory_are_refused(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as c:
        for files in ([_file("../evil")], [_file("/etc/x")], [_file("a"), _file("a/b")], [_file("b"), _file("a")]):
            with pytest.raises(InvalidRequest, match="bundle n:"):
                await c.connection.request(lambda rid: PushBundle(rid=rid, name="n", files=files))  # noqa: B023


def test_path_rules() -> None:
    assert path_problem("a/b.txt") is None and path_problem("dir/.hidden") is None
    for bad in ("", "/abs", "a//b", "a/./b", "a/..", "..", "nul\0"):
        assert path_problem(bad) is not None, bad
    assert manifest_problem([]) is not None
    assert manifest_problem([_file("a"), _file("a")]) is not None


async def test_a_bundle_larger_than_the_brokers_limit_is_refused_before_anything_travels(tmp_path: Path) -> None:
    """Issue 16, item 11: one content named sixty times counts sixty times."""
    data = b"x" * 600
    async with running_broker(tmp_path, max_bundle_bytes=1000) as b, client_of(b) as c:
        many = [_file(f"copy{i:02d}", data) for i in range(60)]
        with pytest.raises(
            PayloadTooLarge, match="bundle n holds 36,000 bytes in all; this broker takes at most 1,000"
        ):
            await c.connection.request(lambda rid: PushBundle(rid=rid, name="n", files=many))
        with pytest.raises(PayloadTooLarge, match="holds 1,200 bytes"):
            two = [_file("a", data), _file("b", data)]
            await c.connection.request(lambda rid: PushBundle(rid=rid, name="n", files=two))
        one = await c.connection.request(lambda rid: PushBundle(rid=rid, name="n", files=[_file("a", data)]))
        assert one.missing == [hashlib.sha256(data).hexdigest()]  # within the limit: asked for its content


async def test_a_manifest_that_understates_a_files_size_is_refused(tmp_path: Path) -> None:
    data = b"y" * 5000
    src = tmp_path / "big"
    src.write_bytes(data)
    blob = hashlib.sha256(data).hexdigest()
    async with running_broker(tmp_path, max_bundle_bytes=1000) as b, client_of(b) as c:
        await bundles.upload_file(c.connection, src, blob, len(data))
        small = [BundleFile(path="a", blob=blob, size=10)]  # under the limit only on paper
        with pytest.raises(InvalidRequest, match="a is said to hold 10 bytes, but its content has 5,000"):
            await c.connection.request(lambda rid: PushBundle(rid=rid, name="n", files=small))
        with pytest.raises(UnknownBundle):
            await bundles.list_versions(c.connection, "n")

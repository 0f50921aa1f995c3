"""Partial uploads over real TCP (issue 16, item 9): a false claim about a blob's size never blocks a
true upload of that content, and a partial upload nobody writes to expires."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import psycopg
import pytest

from gridd.client import bundles
from gridd.client.blobs import download
from gridd.client.connection import Connection
from gridd.protocol.messages import PutBlob
from tests.clock import FakeClock
from tests.conftest import STORE, client_of, running_broker, running_worker

pytestmark = pytest.mark.anyio

EMPTY = hashlib.sha256(b"").hexdigest()


async def put(conn: Connection, blob: str, size: int, offset: int = 0, data: bytes = b"") -> int:
    """One raw PutBlob, as any peer holding the token may send it; returns the bytes the broker holds."""
    reply = await conn.request(lambda rid: PutBlob(rid=rid, blob=blob, size=size, offset=offset, data=data))
    return int(reply.have)


def blob_rows(data_dir: Path, blob: str) -> tuple[int, int]:
    """The broker's rows of one blob (its pieces, itself), read beside it (SQLite file, or PostgreSQL)."""
    pieces = "SELECT COUNT(*) FROM blob_chunks WHERE blob = %s"
    blobs = "SELECT COUNT(*) FROM blobs WHERE id = %s"
    if STORE["url"] is not None:
        with psycopg.connect(STORE["url"]) as pg:
            found = [pg.execute(sql.encode(), (blob,)).fetchone() for sql in (pieces, blobs)]
    else:
        with sqlite3.connect(data_dir / "gridd.db") as db:
            found = [db.execute(sql.replace("%s", "?"), (blob,)).fetchone() for sql in (pieces, blobs)]
    return int(found[0][0]), int(found[1][0])  # type: ignore[index]


async def test_a_false_size_for_the_empty_file_does_not_block_a_bundle_holding_an_empty_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "run.sh").write_text("test -f empty && ! test -s empty && echo empty-file-ok\n")
    (src / "empty").write_bytes(b"")
    async with running_broker(tmp_path) as b, client_of(b) as c:
        assert await put(c.connection, EMPTY, 5) == 0  # the poison: the empty file's id, 5 bytes
        report = await bundles.push(c.connection, "app", src)
        assert (report.version, report.created) == (1, True)
        async with running_worker(tmp_path, b.addr):
            job = await c.submit(["sh", "run.sh"], bundle="app")
            (view,) = await c.wait([job])
            out, _ = await c.output(job)
    assert view.state == "succeeded" and out == b"empty-file-ok\n"


async def test_a_partial_upload_of_a_false_size_or_false_content_gives_way_to_the_true_one(tmp_path: Path) -> None:
    data = b"the true content, 38 bytes long......"
    blob = hashlib.sha256(data).hexdigest()
    src = tmp_path / "true.bin"
    src.write_bytes(data)
    async with running_broker(tmp_path) as b, client_of(b) as c:
        # A false size: the partial it left is replaced by the true claim, not compared with it.
        assert await put(c.connection, blob, len(data) + 10, 0, b"junk") == 4
        assert await bundles.upload_file(c.connection, src, blob, len(data)) == len(data)
        assert await download(c.connection, blob) == data
        # A false piece of the true size: found out at completion, discarded, and sent again whole.
        other = data.upper()
        other_blob = hashlib.sha256(other).hexdigest()
        (tmp_path / "other.bin").write_bytes(other)
        assert await put(c.connection, other_blob, len(other), 0, b"LIES") == 4
        assert await bundles.upload_file(c.connection, tmp_path / "other.bin", other_blob, len(other)) > 0
        assert await download(c.connection, other_blob) == other


async def test_a_partial_upload_nobody_writes_to_for_an_hour_is_dropped(tmp_path: Path) -> None:
    clock = FakeClock()
    blob = hashlib.sha256(b"a" * 100).hexdigest()
    async with running_broker(tmp_path, clock) as b, client_of(b) as c:
        assert await put(c.connection, blob, 100, 0, b"a" * 50) == 50
        clock.advance(59 * 60)
        assert await put(c.connection, blob, 100) == 50  # asking does not keep it alive...
        assert await put(c.connection, blob, 100, 50, b"a" * 10) == 60  # ...writing does
        clock.advance(59 * 60)
        assert await put(c.connection, blob, 100) == 60
        clock.advance(2 * 60)
        assert await put(c.connection, EMPTY, 0) == 0  # any upload drops what expired
        assert blob_rows(b.data_dir, blob) == (0, 0)
        assert await put(c.connection, blob, 100) == 0  # a resumed upload starts over

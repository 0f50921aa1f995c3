"""Payloads too large for a frame travel as content-addressed blobs, in pieces, through the broker.

Arguments or a result up to INLINE_BYTES ride in the job or the result itself; larger ones, up to
MAX_BLOB_BYTES (1 GiB), are uploaded piece by piece (BLOB_CHUNK_BYTES each) and named by their sha256.
An upload that breaks off resumes where the broker's reply says it stands; a blob the broker already
holds is not sent again. Past MAX_BLOB_BYTES: PayloadTooLarge, before anything is sent.
"""

from __future__ import annotations

from gridd.client.connection import Connection
from gridd.protocol.errors import BadFrame, PayloadTooLarge
from gridd.protocol.messages import BLOB_CHUNK_BYTES, MAX_BLOB_BYTES, GetBlob, PutBlob, TaskCall
from gridd.protocol.payloads import blob_id

INLINE_BYTES = 1024 * 1024


async def upload(conn: Connection, data: bytes, what: str = "payload") -> str:
    """Store `data` in the broker; returns its blob id."""
    if len(data) > MAX_BLOB_BYTES:
        raise PayloadTooLarge(f"the {what} is {len(data):,} bytes; at most {MAX_BLOB_BYTES:,} can travel")
    blob, size, offset = blob_id(data), len(data), 0
    view = memoryview(data)
    while True:
        piece = bytes(view[offset : offset + BLOB_CHUNK_BYTES])
        reply = await conn.request(
            lambda rid: PutBlob(rid=rid, blob=blob, size=size, offset=offset, data=piece)  # noqa: B023 - at once
        )
        if reply.have >= size:
            return blob
        if reply.have <= offset and reply.have != 0:
            raise BadFrame(f"the broker kept no progress on blob {blob[:12]} (at {reply.have} of {size})")
        offset = reply.have


async def task_call(conn: Connection, name: str, payload: bytes, *, records: int | None = None) -> TaskCall:
    """The call of task `name` on `payload`: inline, or through a blob when it is larger than INLINE_BYTES."""
    if len(payload) > INLINE_BYTES:
        blob = await upload(conn, payload, "batch of records" if records is not None else "arguments")
        return TaskCall(name=name, args_blob=blob, records=records)
    return TaskCall(name=name, args=payload, records=records)


async def download(conn: Connection, blob: str) -> bytes:
    """The content of a blob, checked against its id."""
    parts: list[bytes] = []
    offset = 0
    while True:
        reply = await conn.request(lambda rid: GetBlob(rid=rid, blob=blob, offset=offset))  # noqa: B023 - at once
        parts.append(reply.data)
        offset += len(reply.data)
        if offset >= reply.size or not reply.data:
            break
    data = b"".join(parts)
    if blob_id(data) != blob:
        raise BadFrame(f"blob {blob[:12]} arrived damaged ({len(data)} bytes that do not hash to its id)")
    return data

"""Facts about task payloads that both ends need without decoding them: content ids, array lengths."""

from __future__ import annotations

import hashlib


def blob_id(data: bytes) -> str:
    """The content address of a blob: its sha256, in hex."""
    return hashlib.sha256(data).hexdigest()


def array_length(data: bytes) -> int | None:
    """How many items the msgpack array at the start of `data` has (None: it is not an array).

    The broker counts a batch's results with this, from the header alone."""
    if not data:
        return None
    head = data[0]
    if 0x90 <= head <= 0x9F:  # fixarray
        return head & 0x0F
    if head == 0xDC and len(data) >= 3:  # array 16
        return int.from_bytes(data[1:3], "big")
    if head == 0xDD and len(data) >= 5:  # array 32
        return int.from_bytes(data[1:5], "big")
    return None

"""The frame codec, sans-IO: a 4-byte big-endian length, then a msgpack body.

The decoder owns the receive buffer and returns every complete frame of a chunk at once (reading frame by
frame costs ~20x, see DESIGN.md). The length is checked against the limit before any of the body is kept,
so a peer cannot make the other side buffer more than one frame limit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import msgspec

from gridd.protocol.errors import BadFrame, FrameTooLarge

MAX_FRAME_BYTES = 16 * 1024 * 1024
_PREFIX = 4

_encoder = msgspec.msgpack.Encoder()

T = TypeVar("T")


def encode_frame(message: msgspec.Struct) -> bytes:
    """One message as a frame: length prefix + msgpack body."""
    buf = bytearray(_PREFIX)
    _encoder.encode_into(message, buf, _PREFIX)
    buf[:_PREFIX] = (len(buf) - _PREFIX).to_bytes(_PREFIX, "big")
    return bytes(buf)


def encode_frames(messages: Sequence[msgspec.Struct]) -> bytes:
    """Several frames in one buffer, for a single write."""
    buf = bytearray()
    for message in messages:
        start = len(buf)
        buf.extend(b"\0\0\0\0")
        _encoder.encode_into(message, buf, start + _PREFIX)
        buf[start : start + _PREFIX] = (len(buf) - start - _PREFIX).to_bytes(_PREFIX, "big")
    return bytes(buf)


class Later:
    """A frame type (a union) that a function returns, called the first time a frame needs it: so that
    the driver of a connection that expects a few types imports the whole union (every message module)
    only if a frame is none of them (FrameDecoder's `expected`)."""

    def __init__(self, resolve: Callable[[], object]) -> None:
        self.resolve = resolve


class FrameDecoder(Generic[T]):
    """Feed it bytes as they arrive; it returns the messages of every frame completed so far.

    With `expected` (some of the union's types, as a union), a frame is decoded first by a decoder of those
    alone, and by the whole union's only if it is none of them: that one is built the first time it is
    needed. The messages are the same (a tag names one type in either), so are the errors (the whole
    union's decoder has the last word on a frame that fails); what changes is the start: msgspec resolves
    every field of every type of a decoder when it is built, some 3 ms for the broker's whole union, most
    of which a one-shot command (client/oneshot.py) never needs.
    """

    def __init__(
        self, message_type: object, max_frame_bytes: int = MAX_FRAME_BYTES, *, expected: object = None
    ) -> None:
        """`message_type`: what a frame decodes to, a Struct or a union of them (T, spelled for msgspec), or
        Later: resolved when a frame is none of `expected` (at once without `expected`)."""
        self._type = message_type
        self._expected: msgspec.msgpack.Decoder[T] | None = None
        self._decoder: msgspec.msgpack.Decoder[T] | None = None
        if expected is None:
            self._decoder = self._whole()
        else:
            self._expected = msgspec.msgpack.Decoder(expected)
        self.max_frame_bytes = max_frame_bytes  # may change between frames (e.g. once a peer is authenticated)
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back, waiting for the rest."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[T]:
        """Add received bytes; raises BadFrame or FrameTooLarge (the connection must then close)."""
        self._buf.extend(data)
        buf = self._buf
        messages: list[T] = []
        pos = 0
        end = len(buf)
        while end - pos >= _PREFIX:
            size = int.from_bytes(buf[pos : pos + _PREFIX], "big")
            if size > self.max_frame_bytes:
                raise FrameTooLarge(f"frame of {size} bytes exceeds the limit of {self.max_frame_bytes} bytes")
            if end - pos - _PREFIX < size:
                break
            body = memoryview(buf)[pos + _PREFIX : pos + _PREFIX + size]
            try:
                messages.append(self._decode(body))
            except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
                raise BadFrame(f"malformed frame: {exc}") from exc
            finally:
                body.release()
            pos += _PREFIX + size
        if pos:
            del buf[:pos]
        return messages

    def _decode(self, body: memoryview) -> T:
        if self._expected is not None:
            try:
                return self._expected.decode(body)
            except msgspec.DecodeError:
                pass  # none of the expected types, or malformed: the whole union's decoder says which
        if self._decoder is None:
            self._decoder = self._whole()
        return self._decoder.decode(body)

    def _whole(self) -> msgspec.msgpack.Decoder[T]:
        return msgspec.msgpack.Decoder(self._type.resolve() if isinstance(self._type, Later) else self._type)

"""The wire: frames, messages, the handshake, errors, authentication and version. Pure: no sockets, no event
loop."""

from gridd.protocol.frames import MAX_FRAME_BYTES, FrameDecoder, encode_frame, encode_frames
from gridd.protocol.version import PROTOCOL_VERSION

__all__ = ["MAX_FRAME_BYTES", "PROTOCOL_VERSION", "FrameDecoder", "encode_frame", "encode_frames"]

"""The wire codec and what it promises: every message survives a round trip however the bytes arrive,
anything a peer may send is refused only as a ProtocolError, sizes are checked before bodies are kept,
out-of-bounds values are refused on decode, and error codes map back to their exceptions."""

from __future__ import annotations

from typing import Any, get_args

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridd.protocol import messages as m
from gridd.protocol.errors import (
    BadFrame,
    ErrorCode,
    FrameTooLarge,
    GriddError,
    ProtocolError,
    exception_for,
)
from gridd.protocol.frames import MAX_FRAME_BYTES, FrameDecoder, Later, encode_frame, encode_frames
from tests import strategies as s

settings.register_profile("gridd", deadline=None, max_examples=100)
settings.load_profile("gridd")

PEER_CLASSES = set(get_args(m.PeerMessage))
BROKER_CLASSES = set(get_args(m.BrokerMessage))


def _union_of(message: Any) -> Any:
    return m.PeerMessage if type(message) in PEER_CLASSES else m.BrokerMessage


def _raw_frame(body: Any) -> bytes:
    """A frame built by hand from any msgpack-encodable value (bypassing the Structs' checks)."""
    data = msgspec.msgpack.encode(body)
    return len(data).to_bytes(4, "big") + data


def test_every_message_class_has_a_strategy_and_belongs_to_exactly_one_direction() -> None:
    assert set(s.BY_CLASS) == PEER_CLASSES | BROKER_CLASSES
    assert not PEER_CLASSES & BROKER_CLASSES


@settings(deadline=None)
@given(s.peer_messages | s.broker_messages)
def test_every_message_round_trips_through_a_frame(message: Any) -> None:
    frame = encode_frame(message)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    decoder: FrameDecoder[Any] = FrameDecoder(_union_of(message))
    assert decoder.feed(frame) == [message]
    assert decoder.buffered == 0


@settings(deadline=None)
@given(s.peer_messages)
def test_a_peer_message_is_not_accepted_by_a_peer_as_if_the_broker_sent_it(message: Any) -> None:
    with pytest.raises(BadFrame):
        FrameDecoder(m.BrokerMessage).feed(encode_frame(message))


@settings(deadline=None)
@given(st.lists(s.peer_messages, min_size=1, max_size=6), st.data())
def test_any_chunking_of_a_stream_of_frames_decodes_to_the_same_messages(messages: list[Any], data: Any) -> None:
    stream = encode_frames(messages)
    assert stream == b"".join(encode_frame(msg) for msg in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    decoder: FrameDecoder[Any] = FrameDecoder(m.PeerMessage)
    got: list[Any] = []
    for chunk in chunks:
        got.extend(decoder.feed(chunk))
    assert got == messages
    assert decoder.buffered == 0


@settings(deadline=None)
@given(s.broker_messages, st.data())
def test_a_truncated_frame_yields_nothing_until_its_last_byte_arrives(message: Any, data: Any) -> None:
    frame = encode_frame(message)
    cut = data.draw(st.integers(0, len(frame) - 1))
    decoder: FrameDecoder[Any] = FrameDecoder(m.BrokerMessage)
    assert decoder.feed(frame[:cut]) == []
    assert decoder.buffered == cut
    assert decoder.feed(frame[cut:]) == [message]


_garbage = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda body: len(body).to_bytes(4, "big") + body, st.binary(max_size=200)),
    st.builds(_raw_frame, s.msgpack_values),
    st.builds(
        _raw_frame,
        st.builds(
            lambda tag, fields: {"op": tag, **fields},
            st.sampled_from([c.__struct_config__.tag for c in s.BY_CLASS]),
            st.dictionaries(
                st.sampled_from(["rid", "jobs", "job_id", "lease", "leases", "argv", "secret"]),
                s.msgpack_values,
                max_size=3,
            ),
        ),
    ),
)


@settings(deadline=None)
@given(st.lists(_garbage, min_size=1, max_size=4), st.sampled_from([m.PeerMessage, m.BrokerMessage]))
def test_arbitrary_bytes_are_refused_only_as_protocol_errors(chunks: list[bytes], union: Any) -> None:
    decoder: FrameDecoder[Any] = FrameDecoder(union, max_frame_bytes=4096)
    try:
        for chunk in chunks:
            for message in decoder.feed(chunk):
                assert isinstance(message, m.Message)
    except ProtocolError:
        pass  # BadFrame or FrameTooLarge: the connection is closed; anything else would be a bug


def _outcome(decoder: FrameDecoder[Any], frames: list[bytes]) -> list[Any]:
    """What a decoder makes of each frame: the messages, or the error's type and words."""
    out: list[Any] = []
    for frame in frames:
        try:
            out.append(decoder.feed(frame))
        except ProtocolError as exc:
            out.append((type(exc), str(exc)))
    return out


@settings(deadline=None)
@given(
    st.lists(s.broker_messages.map(encode_frame) | _garbage, min_size=1, max_size=4),
    st.sampled_from([m.StatusReported, m.JobShown | m.JobsAccepted, m.Event]),
)
def test_a_decoder_told_what_to_expect_decodes_and_refuses_every_frame_as_the_whole_unions(
    frames: list[bytes], expected: Any
) -> None:
    # One-shot commands (client/oneshot.py) build only the decoder of the replies they wait for.
    whole = _outcome(FrameDecoder(m.BrokerMessage), frames)
    assert (
        _outcome(FrameDecoder(m.BrokerMessage, expected=m.BrokerCA | m.Welcome | m.Error | expected), frames) == whole
    )
    # The whole union may come Later (the one-shot CLI imports every message module only if it must).
    resolved: list[object] = []
    later = Later(lambda: resolved.append(m.BrokerMessage) or m.BrokerMessage)
    assert _outcome(FrameDecoder(later, expected=m.BrokerCA | m.Welcome | m.Error | expected), frames) == whole


def test_a_union_known_later_is_resolved_only_for_a_frame_not_expected() -> None:
    resolved: list[object] = []
    decoder: FrameDecoder[Any] = FrameDecoder(
        Later(lambda: resolved.append(m.BrokerMessage) or m.BrokerMessage), expected=m.Welcome | m.StatusReported
    )
    status = m.StatusReported(rid=1, counts={}, workers=0, slots=0, running=0)
    assert decoder.feed(encode_frame(status)) == [status] and resolved == []
    assert decoder.feed(encode_frame(m.Pong(rid=2))) == [m.Pong(rid=2)] and resolved == [m.BrokerMessage]


@settings(deadline=None)
@given(st.integers(MAX_FRAME_BYTES + 1, 2**32 - 1))
def test_an_oversized_length_prefix_is_refused_before_any_body_arrives(size: int) -> None:
    with pytest.raises(FrameTooLarge):
        FrameDecoder(m.PeerMessage).feed(size.to_bytes(4, "big"))


@settings(deadline=None)
@given(st.integers(1, 10_000), st.data())
def test_the_frame_limit_is_configurable_and_exact(limit: int, data: Any) -> None:
    size = data.draw(st.integers(limit + 1, 2**32 - 1))
    with pytest.raises(FrameTooLarge):
        FrameDecoder(m.PeerMessage, max_frame_bytes=limit).feed(size.to_bytes(4, "big"))
    at_limit: FrameDecoder[Any] = FrameDecoder(m.PeerMessage, max_frame_bytes=limit)
    assert at_limit.feed(limit.to_bytes(4, "big")) == []  # a frame of exactly the limit is awaited


def test_an_oversized_prefix_after_good_frames_is_still_refused() -> None:
    good = encode_frame(m.GetStatus(rid=1))
    with pytest.raises(FrameTooLarge):
        FrameDecoder(m.PeerMessage, max_frame_bytes=100).feed(good + (101).to_bytes(4, "big"))


_SPEC = {"argv": ["true"]}


@pytest.mark.parametrize(
    ("valid", "invalid"),
    [
        ({"op": "job.show", "rid": 2**32 - 1, "job_id": "1"}, {"op": "job.show", "rid": 2**32, "job_id": "1"}),
        ({"op": "job.show", "rid": 0, "job_id": "1"}, {"op": "job.show", "rid": -1, "job_id": "1"}),
        (
            {"op": "lease.renew", "rid": 1, "leases": [{"job_id": "1", "lease": 0}]},
            {"op": "lease.renew", "rid": 1, "leases": [{"job_id": "1", "lease": -1}]},
        ),
        (
            {"op": "lease.return", "rid": 1, "leases": [{"job_id": "1", "lease": 2**63 - 1}]},
            {"op": "lease.return", "rid": 1, "leases": [{"job_id": "1", "lease": 2**63}]},
        ),
        ({"op": "job.submit", "rid": 1, "jobs": [_SPEC]}, {"op": "job.submit", "rid": 1, "jobs": [{"argv": []}]}),
        ({"op": "job.submit", "rid": 1, "jobs": [_SPEC]}, {"op": "job.submit", "rid": 1, "jobs": []}),
        (
            {"op": "job.submit", "rid": 1, "jobs": [{**_SPEC, "max_attempts": 1000}]},
            {"op": "job.submit", "rid": 1, "jobs": [{**_SPEC, "max_attempts": 0}]},
        ),
        (
            {"op": "job.submit", "rid": 1, "jobs": [{**_SPEC, "timeout_s": 0.001}]},
            {"op": "job.submit", "rid": 1, "jobs": [{**_SPEC, "timeout_s": 0.0}]},
        ),
        (
            {"op": "job.submit", "rid": 1, "jobs": [{**_SPEC, "queue": "q"}]},
            {"op": "job.submit", "rid": 1, "jobs": [{**_SPEC, "queue": ""}]},
        ),
        (
            {"op": "hello", "version": 2, "role": "client", "name": "c", "secret": "s" * 512},
            {"op": "hello", "version": 2, "role": "client", "name": "c", "secret": "s" * 513},
        ),
        ({"op": "lease.request", "rid": 1, "max_jobs": 1}, {"op": "lease.request", "rid": 1, "max_jobs": 0}),
        ({"op": "job.show", "rid": 1, "job_id": "x" * 64}, {"op": "job.show", "rid": 1, "job_id": "x" * 65}),
        ({"op": "job.show", "rid": 1, "job_id": "1"}, {"op": "job.show", "rid": 1}),
        ({"op": "job.show", "rid": 1, "job_id": "1"}, {"op": "job.shown", "rid": 1, "job_id": "1"}),
    ],
    ids=lambda d: str(d)[:40],
)
def test_out_of_bounds_values_from_a_peer_are_refused_as_bad_frames(valid: dict, invalid: dict) -> None:
    (decoded,) = FrameDecoder(m.PeerMessage).feed(_raw_frame(valid))  # the bound itself is accepted
    assert decoded.__struct_config__.tag == valid["op"]
    with pytest.raises(BadFrame):
        FrameDecoder(m.PeerMessage).feed(_raw_frame(invalid))


def test_unknown_fields_from_a_newer_peer_are_ignored() -> None:
    (decoded,) = FrameDecoder(m.PeerMessage).feed(_raw_frame({"op": "status.get", "rid": 7, "added_later": [1]}))
    assert decoded == m.GetStatus(rid=7)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_error_code_comes_back_as_the_exception_that_carries_it(code: ErrorCode) -> None:
    exc = exception_for(int(code), "the message")
    assert isinstance(exc, GriddError)
    assert exc.code == code
    assert str(exc) == "the message"


def test_error_codes_map_to_their_specific_classes() -> None:
    specific = {c: type(exception_for(c, "")) for c in ErrorCode}
    assert specific[ErrorCode.BAD_FRAME] is BadFrame
    assert specific[ErrorCode.FRAME_TOO_LARGE] is FrameTooLarge
    # every code but INTERNAL has its own class, and no two codes share one
    others = [cls for c, cls in specific.items() if c != ErrorCode.INTERNAL]
    assert GriddError not in others
    assert len(set(others)) == len(others)


@settings(deadline=None)
@given(st.integers(-(2**63), 2**63).filter(lambda c: c not in set(ErrorCode)))
def test_an_unknown_error_code_from_a_newer_peer_becomes_a_plain_gridd_error(code: int) -> None:
    exc = exception_for(code, "new")
    assert type(exc) is GriddError
    assert str(exc) == "new"


@pytest.mark.parametrize("cls", sorted(s.BY_CLASS, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_the_strategies_set_every_field_of_every_message(cls: type) -> None:
    """Guards the strategies themselves: a field added to a message must be generated too, or the
    round-trip tests above would silently stop covering it."""
    shown = repr(s.BY_CLASS[cls])  # builds(Cls, field=..., ...)
    missing = [name for name in cls.__struct_fields__ if f"{name}=" not in shown]
    assert not missing, f"tests/strategies.py does not generate {cls.__name__}.{missing}"

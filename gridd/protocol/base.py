"""The kinds of frame body: Message (any frame), Request and Reply (a rid pairs them), and Record (a value
carried inside messages).

Rule: a request names, in its class header, the one reply that answers it
(`class ShowJob(Request[JobShown], ...)`); besides it, only an Error with the same rid may answer. That
header is the table of which reply answers which request: the type checker reads it (a request is typed
end to end, `Connection.request` returns its reply's type), and so does the running code (`answered_by`,
gathered in messages.REPLIES), which refuses a reply of another kind. The generic parameter is Python
only: it changes nothing on the wire, where `rid` stays the first field after the tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar, cast, get_args, get_origin

import msgspec

from gridd.protocol.fields import RequestId


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="op"):
    """Base of every frame body; each subclass sets a stable tag."""

    def features_used(self) -> Sequence[str]:
        """The features (protocol/features.py) a broker must have announced to be sent this: none, unless a
        message that adds some says so."""
        return ()


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """A value carried inside messages (not a frame of its own)."""


class Reply(Message, frozen=True):
    """The answer to one request: `rid` is the request's."""

    rid: RequestId


R_co = TypeVar("R_co", bound=Reply, covariant=True)


class Request(Message, Generic[R_co], frozen=True):
    """A message that the broker answers with one R_co (or an Error) carrying the same `rid`."""

    rid: RequestId
    answered_by: ClassVar[type[Reply]]  # R_co, for the running code; set from the class header

    def __init_subclass__(cls, **kwargs: Any) -> None:  # msgspec's class options: passed on as they are
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            if get_origin(base) is Request:
                (reply,) = get_args(base)
                if not (isinstance(reply, type) and issubclass(reply, Reply)):
                    raise TypeError(f"{cls.__name__}: Request[...] names {reply!r}, which is not a Reply class")
                cls.answered_by = reply
                return
        if not hasattr(cls, "answered_by"):
            raise TypeError(f"{cls.__name__} must say which reply answers it: class {cls.__name__}(Request[Reply])")

    @classmethod
    def reply_type(cls) -> type[R_co]:
        """The reply class that answers this request (R_co, as the running code sees it)."""
        return cast("type[R_co]", cls.answered_by)  # set from the header's R_co by __init_subclass__

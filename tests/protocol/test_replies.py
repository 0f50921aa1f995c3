"""The table of which reply answers which request (each request's class header, gathered in
messages.REPLIES): every request a peer sends with a rid has exactly one reply the broker may send, and
every reply answers exactly one request."""

from __future__ import annotations

from typing import get_args

import pytest

from gridd.protocol import messages as m
from gridd.protocol.base import Reply, Request


def test_every_request_with_a_rid_names_one_reply_the_broker_sends_and_every_reply_answers_one() -> None:
    peer, broker = set(get_args(m.PeerMessage)), set(get_args(m.BrokerMessage))
    with_rid = {kind for kind in peer if "rid" in kind.__struct_fields__}
    assert set(m.REPLIES) == with_rid
    assert set(m.REPLIES.values()) == {kind for kind in broker if issubclass(kind, Reply)}
    assert len(set(m.REPLIES.values())) == len(m.REPLIES)  # no reply answers two kinds of request
    assert m.REPLIES[m.SubmitJobs] is m.JobsAccepted and m.SubmitJobs.reply_type() is m.JobsAccepted


def test_a_request_that_names_no_reply_cannot_be_declared() -> None:
    with pytest.raises(TypeError, match="must say which reply answers it"):

        class Orphan(Request, frozen=True, tag="test.orphan"):  # type: ignore[type-arg]
            pass

    with pytest.raises(TypeError, match="not a Reply class"):

        class Confused(Request[m.Ping], frozen=True, tag="test.confused"):  # type: ignore[type-var]
            pass

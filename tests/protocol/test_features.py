"""The features a broker announces (protocol/features.py): which a request uses, which one an older broker
lacks, and that a Welcome of a broker from before them decodes as announcing none."""

from __future__ import annotations

import msgspec

from gridd.protocol import features as f
from gridd.protocol.base import Message
from gridd.protocol.messages import AddSchedule, BrokerMessage, JobSpec, SubmitJobs, Welcome


class _WelcomeBeforeFeatures(Message, frozen=True, tag="welcome"):
    """The Welcome as a broker from before `features` encodes it."""

    broker_version: str
    lease_ttl_s: float
    heartbeat_s: float


def test_a_welcome_from_a_broker_before_features_announces_none() -> None:
    old = msgspec.msgpack.encode(_WelcomeBeforeFeatures(broker_version="0.old", lease_ttl_s=30, heartbeat_s=5))
    welcome = msgspec.msgpack.decode(old, type=BrokerMessage)
    assert isinstance(welcome, Welcome) and welcome.features == []


def test_the_first_feature_a_request_uses_that_the_broker_lacks_is_named() -> None:
    plain = JobSpec(argv=["true"])
    delayed = JobSpec(argv=["true"], start_at_ms=1, retry_on=["exit:75"])
    keyed = SubmitJobs(rid=1, jobs=[plain, delayed], key="k")
    assert f.used(keyed) == [f.SUBMIT_KEY, f.START_AT, f.RETRY_ON]
    assert f.missing(keyed, []) == f.SUBMIT_KEY
    assert f.missing(keyed, [f.SUBMIT_KEY, f.START_AT]) == f.RETRY_ON
    assert f.missing(keyed, f.KNOWN) is None
    assert f.missing(SubmitJobs(rid=1, jobs=[plain]), []) is None  # a plain submit needs nothing
    assert f.missing(AddSchedule(rid=1, name="n", cron="@daily", spec=plain), [f.START_AT]) == f.SCHEDULES
    assert set(f.ASKED_AS) == f.KNOWN  # each has the words a person used to ask for it

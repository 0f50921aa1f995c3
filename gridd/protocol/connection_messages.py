"""The connection's own messages: the handshake (Hello, BrokerCA, Welcome; handshake.py says in which
order), the Error that refuses a request or ends a connection, and the Ping that keeps an idle one open.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from gridd.protocol.base import Message, Reply, Request
from gridd.protocol.fields import Count, Name, RequestId, Secret


class Hello(Message, frozen=True, tag="hello"):
    """First frame from any peer: who it is and the secret of the credential it speaks with. The broker
    answers Welcome, or an Error and the close. Sent only once the peer has verified the broker (inside
    TLS), so the broker never hands a stranger anything to test guesses of a secret against."""

    version: int
    role: str  # client | worker
    name: Name
    secret: Secret = ""


class BrokerCA(Message, frozen=True, tag="broker_ca"):
    """First frame from the broker on a TLS connection, before any peer speaks: its CA certificate (PEM).

    A peer whose credential names the CA's digest but has not stored that CA yet cannot make Python's ssl
    show it the unverified chain (3.11), so the broker hands it over here; the peer checks the digest and
    that the TLS certificate it was shown is issued by this CA before it sends its secret."""

    ca_pem: Annotated[str, msgspec.Meta(max_length=16384)]


class Welcome(Message, frozen=True, tag="welcome"):
    """Authentication succeeded; the broker's settings a peer needs."""

    broker_version: str
    lease_ttl_s: float
    heartbeat_s: float
    # A client connection that sends nothing for this long while no long poll of it is in flight is
    # closed; a peer keeps an idle connection open with Ping. 0 (an older broker): nothing is closed.
    idle_timeout_s: float = 0.0
    # The broker's limits on a job's spec (gridd/protocol/limits.py), so a client refuses early; 0: not said.
    max_command_bytes: Count = 0
    max_stdin_bytes: Count = 0
    # The features it knows beyond the protocol version (protocol/features.py): a client refuses a request
    # that uses one not named here. Empty (an older broker): none, since it would ignore their fields.
    features: list[str] = msgspec.field(default_factory=list)


class Error(Message, frozen=True, tag="error"):
    """A refused request (rid set) or a connection-level error (rid None, then the broker closes)."""

    rid: RequestId | None
    code: int  # an ErrorCode value; a plain int so new codes never break old peers
    message: str


class Pong(Reply, frozen=True, tag="pong"):
    """The answer to a Ping."""


class Ping(Request[Pong], frozen=True, tag="ping"):
    """Keeps an idle connection open (see Welcome.idle_timeout_s); answered with Pong."""

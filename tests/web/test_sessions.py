"""The web page's access rules in memory: the one-time link works once and for 5 minutes; a session ends
after 12 h unused and closes the broker connection it owns."""

from __future__ import annotations

import anyio

from gridd.web.sessions import NONCE_TTL_S, SESSION_IDLE_S, Sessions
from gridd.web.view import BrokerView


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def view() -> BrokerView:
    return BrokerView(lambda: "127.0.0.1:1", "unused", insecure=True)


def test_a_login_link_works_once_and_expires_after_five_minutes() -> None:
    clock = Clock()
    sessions = Sessions(clock)
    first = sessions.new_nonce()
    assert sessions.take_nonce(first) and not sessions.take_nonce(first)
    late = sessions.new_nonce()
    clock.now += NONCE_TTL_S + 1
    assert not sessions.take_nonce(late)
    assert not sessions.take_nonce("guess")


async def test_a_session_ends_after_twelve_hours_unused_and_closes_its_connection() -> None:
    clock = Clock()
    sessions = Sessions(clock)
    scope = anyio.CancelScope()
    session = sessions.open(view(), owned=scope)
    clock.now += SESSION_IDLE_S - 10
    assert sessions.get(session.token) is session  # used: its idle clock restarts
    clock.now += SESSION_IDLE_S - 10
    assert sessions.get(session.token) is session and not scope.cancel_called
    clock.now += SESSION_IDLE_S + 1
    sessions.sweep()
    assert sessions.get(session.token) is None and scope.cancel_called
    assert sessions.get(None) is None and sessions.get("") is None

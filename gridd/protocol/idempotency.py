"""Idempotent submit: the key a client names a submit by, and how long the broker keeps it. Pure: no I/O.

A key (`gridd submit --key KEY`, Python `key=`) names one submit call, per credential: the same key again,
with the same request, returns the jobs the first made and makes none; with a different request it is
refused (KeyConflict). The broker keeps a key for its TTL (`--key-ttl`), then forgets it.

Rules: a key is 1 to MAX_KEY_LENGTH printable ASCII characters without spaces (a UUID, a hash, a name
and a date), so it fits one line of a message or a log; a TTL is between MIN_KEY_TTL_S and MAX_KEY_TTL_S.
Both are checked on decode (a peer that skips the checks here gets its connection closed) and by the
client first, with a line that says the limit.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

MAX_KEY_LENGTH = 200
MIN_KEY_TTL_S = 60.0  # a minute: less could not cover one retry after a lost reply
MAX_KEY_TTL_S = 365 * 86400.0  # a year: keys are rows the broker keeps
DEFAULT_KEY_TTL_S = 7 * 86400.0  # a week

_KEY_PATTERN = rf"^[!-~]{{1,{MAX_KEY_LENGTH}}}$"
SubmitKeyName = Annotated[str, msgspec.Meta(pattern=_KEY_PATTERN)]
KeyTtl = Annotated[float, msgspec.Meta(ge=MIN_KEY_TTL_S, le=MAX_KEY_TTL_S)]
KeyPart = Annotated[int, msgspec.Meta(ge=0, lt=2**31)]  # which request of a submit sent in several


def key_problem(key: str) -> str | None:
    """Why `key` cannot name a submit, in one line; None if it can."""
    if not key:
        return "a key cannot be empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"a key is at most {MAX_KEY_LENGTH} characters, this one has {len(key)}"
    if not all("!" <= ch <= "~" for ch in key):
        return "a key holds printable ASCII characters only, without spaces (e.g. a UUID, or nightly-2026-12-24)"
    return None


def key_ttl_problem(ttl_s: float) -> str | None:
    """Why a key cannot be kept `ttl_s` seconds, in one line; None if it can."""
    if not MIN_KEY_TTL_S <= ttl_s <= MAX_KEY_TTL_S:
        return f"a key is kept between 1 minute and 365 days, not {ttl_s:g} seconds"
    return None

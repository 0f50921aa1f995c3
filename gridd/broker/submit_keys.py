"""Idempotent submit, the broker's side of the request: the key a SubmitJobs names, made a store SubmitKey
with the digest of what the request asks (protocol/idempotency.py says what a key is).

Rule: the digest is the sha256 of the request's canonical msgpack: every field but its rid and the key's
own (key, key_ttl_s), fields at their default left out (so a field a later gridd adds, with its default,
changes no digest: a retry across a broker upgrade still finds its key), maps in sorted order. Two
requests with one digest ask for the same jobs; anything else (an argument, the queue, --after) differs.
"""

from __future__ import annotations

import hashlib

import msgspec

from gridd.broker.store.interface import SubmitKey
from gridd.protocol.idempotency import DEFAULT_KEY_TTL_S
from gridd.protocol.messages import SubmitJobs

_canonical = msgspec.msgpack.Encoder(order="deterministic")
_NOT_ASKED = ("rid", "key", "key_ttl_s")  # how it travels, not what it asks


def submit_key(m: SubmitJobs) -> SubmitKey | None:
    """The key the request names, with its digest and TTL; None for a submit without a key."""
    if m.key is None:
        return None
    ttl_s = m.key_ttl_s if m.key_ttl_s is not None else DEFAULT_KEY_TTL_S
    return SubmitKey(name=m.key, digest=request_digest(m), ttl_ms=round(ttl_s * 1000), part=m.key_part)


def request_digest(m: SubmitJobs) -> str:
    """The sha256 (hex) of what `m` asks for (see the module's rule)."""
    asked: dict[str, object] = {}
    for f in msgspec.structs.fields(m):
        value = getattr(m, f.name)
        if f.name in _NOT_ASKED or value == _default(f):
            continue
        asked[f.encode_name] = value  # a JobSpec leaves out its own defaults (omit_defaults)
    return hashlib.sha256(_canonical.encode(asked)).hexdigest()


def _default(f: msgspec.structs.FieldInfo) -> object:
    if f.default is not msgspec.NODEFAULT:
        return f.default
    if f.default_factory is not msgspec.NODEFAULT:
        return f.default_factory()
    return msgspec.NODEFAULT  # required: never left out

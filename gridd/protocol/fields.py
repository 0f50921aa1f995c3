"""The bounded value types of the wire: every number and string a message carries off the network is
checked against one of these on decode, so decoding is validation (messages.py has the rules).

Job states and event kinds travel as plain strings so that new ones never break an old peer.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

RequestId = Annotated[int, msgspec.Meta(ge=0, lt=2**32)]
JobId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
EpochMs = Annotated[int, msgspec.Meta(ge=0, lt=2**53)]
# A lease's fencing token: random and unguessable (the broker draws 62 bits for each lease), never ordered.
Lease = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
# The secret of a credential (gridd/protocol/credentials.py): sent once, in Hello, inside TLS.
Secret = Annotated[str, msgspec.Meta(max_length=512)]
Count = Annotated[int, msgspec.Meta(ge=0, lt=2**53)]
BlobId = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]  # the sha256 of the content, in hex
TaskName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$", max_length=512)]
# A bundle's name never starts with a dot (it names a directory in workers' caches); a reference to it
# may pin a version: "NAME@3".
BundleName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")]
BundleRef = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}(@[1-9][0-9]{0,8})?$")]
MAX_BUNDLE_FILES = 50_000  # keeps a manifest (about 150 bytes a file) well under the frame limit
# Resources (see gridd/resources.py): memory in MiB; a worker's cpus and memory, None when it announced none.
JobCpus = Annotated[int, msgspec.Meta(ge=1, le=4096)]
MemoryMb = Annotated[int, msgspec.Meta(ge=0, le=2**40)]
WorkerCpus = Annotated[int, msgspec.Meta(ge=0, le=2**20)]
# A requirement KEY=VALUE matches a worker tag; ';' and a key's '=' are reserved (they join requirements
# into a job's lane, see gridd/broker/matching.py).
RequireKey = Annotated[str, msgspec.Meta(pattern=r"^[^;=\s]+$", max_length=64)]
RequireValue = Annotated[str, msgspec.Meta(pattern=r"^[^;]*$", max_length=255)]
Requires = Annotated[dict[RequireKey, RequireValue], msgspec.Meta(max_length=32)]
InstanceId = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]*$", max_length=64)]
RoleName = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


# What a worker's machine is doing for the grid: "available" (no idle policy: it takes jobs), "idle" (its
# owner is away: it takes jobs), "owner-busy" and "outside-window" (taken back: it takes none), "suspended"
# (taken back, its jobs stopped until the owner leaves), "draining" (shutting down). Strings, like job states.
WORKER_STATES = ("available", "idle", "owner-busy", "outside-window", "suspended", "draining")
StateName = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]

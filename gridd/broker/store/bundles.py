"""The store's bundles: versioned manifests of content-addressed files. Part of the store, run on its
database thread inside the store's transactions.

Rules: a version is made only in the transaction that found every blob of its manifest complete and
of the size the manifest says, so no version ever names content the broker lacks, and its size (which
the broker limits) is true. Versions count 1, 2, 3... per name and are never
changed; a manifest equal to the latest version's makes none. A job names its bundle by version from
the moment it is submitted ("NAME" is pinned to "NAME@latest"), so its retries run the same files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from gridd.broker.store.sql import TEXTS, Tx
from gridd.protocol.bundles import manifest_digest, split_ref
from gridd.protocol.errors import InvalidRequest, UnknownBundle
from gridd.protocol.messages import BundleFile, BundleView, JobSpec

_encoder = msgspec.msgpack.Encoder()
_manifest_decoder = msgspec.msgpack.Decoder(list[BundleFile])
_VIEW = "name, version, digest, files, bytes, pushed_ms"


def push_bundle(db: Tx, name: str, files: Sequence[BundleFile], now_ms: int) -> tuple[int, bool, list[str], str]:
    """(version, created, missing blobs, digest): the version holding `files` (made if the latest
    differs), or version 0 and the blobs that must be uploaded first."""
    digest = manifest_digest(files)
    wanted = sorted({f.blob for f in files})
    complete = dict(
        db.execute(
            f"SELECT id, size FROM blobs WHERE id IN ({TEXTS}) AND have = size",  # noqa: S608
            (db.texts(wanted),),
        ).fetchall()
    )
    for f in files:  # a version's size is what limits it: it must be the size of what it names
        if f.blob in complete and complete[f.blob] != f.size:
            raise InvalidRequest(f"{f.path} is said to hold {f.size:,} bytes, but its content has {complete[f.blob]:,}")
    missing = [blob for blob in wanted if blob not in complete]
    if missing:
        return 0, False, missing, digest
    latest = db.execute(
        "SELECT version, digest FROM bundles WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
    ).fetchone()
    if latest is not None and latest[1] == digest:
        return int(latest[0]), False, [], digest
    version = int(latest[0]) + 1 if latest is not None else 1
    db.execute(
        "INSERT INTO bundles (name, version, digest, manifest, files, bytes, pushed_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (name, version, digest, _encoder.encode(list(files)), len(files), sum(f.size for f in files), now_ms),
    )
    return version, True, [], digest


def list_bundles(db: Tx, name: str | None) -> list[BundleView]:
    """Every version (of bundle `name`, if given), by name then version."""
    if name is None:
        rows = db.execute(f"SELECT {_VIEW} FROM bundles ORDER BY name, version").fetchall()  # noqa: S608
    else:
        rows = db.execute(f"SELECT {_VIEW} FROM bundles WHERE name = ? ORDER BY version", (name,)).fetchall()  # noqa: S608
    if name is not None and not rows:
        raise UnknownBundle(f"no bundle is named {name!r}; push one with: gridd bundle push {name} DIR")
    return [_view(r) for r in rows]


def get_bundle(db: Tx, ref: str) -> tuple[BundleView, list[BundleFile]]:
    """The version `ref` names ("NAME@N", or "NAME": the latest) and its files."""
    name, version = split_ref(ref)
    row = db.execute(
        f"SELECT {_VIEW}, manifest FROM bundles WHERE name = ? AND (CAST(? AS BIGINT) IS NULL OR version = ?)"  # noqa: S608
        " ORDER BY version DESC LIMIT 1",
        (name, version, version),
    ).fetchone()
    if row is None:
        raise UnknownBundle(_unknown(name, version))
    return _view(row), _manifest_decoder.decode(row[6])


def pin_bundles(db: Tx, specs: Sequence[JobSpec]) -> list[JobSpec]:
    """The specs with each bundle named by version: "NAME" becomes "NAME@latest"; an unknown name or
    version is refused (UnknownBundle), and so is a bundle for a Python task."""
    pinned: dict[str, str] = {}
    out: list[JobSpec] = []
    for spec in specs:
        if spec.bundle is None:
            out.append(spec)
            continue
        if spec.task is not None:
            raise InvalidRequest("a Python task runs in its worker's environment, not in a bundle")
        ref = pinned.get(spec.bundle)
        if ref is None:
            name, version = split_ref(spec.bundle)
            row = db.execute(
                "SELECT MAX(version) FROM bundles WHERE name = ? AND (CAST(? AS BIGINT) IS NULL OR version = ?)",
                (name, version, version),
            ).fetchone()
            if row is None or row[0] is None:
                raise UnknownBundle(_unknown(name, version))
            ref = pinned[spec.bundle] = f"{name}@{row[0]}"
        out.append(msgspec.structs.replace(spec, bundle=ref))
    return out


def _unknown(name: str, version: int | None) -> str:
    if version is None:
        return f"no bundle is named {name!r}; push one with: gridd bundle push {name} DIR"
    return f"bundle {name!r} has no version {version} (gridd bundle list {name} shows its versions)"


def _view(r: Any) -> BundleView:
    return BundleView(name=r[0], version=r[1], digest=r[2], files=r[3], bytes=r[4], pushed_ms=r[5])

"""What both ends must agree on about a bundle's manifest: which paths are allowed, and its digest.

Rules: a manifest is a list of regular files sorted by path, each path relative, "/" separated, with
no empty, "." or ".." part and no NUL, and no file is also a directory of another ("a" and "a/b").
Workers write files at these paths under a job's directory, so the broker checks every manifest it
accepts and the worker checks again before it writes anything. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from gridd.protocol.fields import BundleName, BundleRef
from gridd.protocol.records import BundleFile

_encoder = msgspec.msgpack.Encoder()


def path_problem(path: str) -> str | None:
    """Why `path` may not name a file of a bundle, or None if it may."""
    if "\0" in path:
        return f"the path {path!r} holds a NUL character"
    if path.startswith("/"):
        return f"the path {path!r} is absolute"
    for part in path.split("/"):
        if part in ("", ".", ".."):
            return f"the path {path!r} has an empty, '.' or '..' part"
    return None


def manifest_problem(files: Sequence[BundleFile]) -> str | None:
    """Why `files` is not a valid manifest, or None if it is."""
    if not files:
        return "a bundle needs at least one file"
    previous = ""
    for f in files:
        problem = path_problem(f.path)
        if problem is not None:
            return problem
        if f.path <= previous:
            return f"the manifest is not sorted by path, or names {f.path!r} twice"
        previous = f.path
    paths = {f.path for f in files}
    for f in files:
        parts = f.path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in paths:
                return f"{parent!r} is a file and also a directory of {f.path!r}"
    return None


def manifest_digest(files: Sequence[BundleFile]) -> str:
    """The sha256 (hex) of the manifest's canonical form: what makes two versions equal."""
    import hashlib  # start-up: `gridd submit` reads ref_problem alone

    canonical = [(f.path, f.blob, f.size, f.executable) for f in files]
    return hashlib.sha256(_encoder.encode(canonical)).hexdigest()


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a bundle, or None if it can."""
    try:
        msgspec.convert(name, type=BundleName)
    except msgspec.ValidationError:
        return f"{name!r} is not a bundle name: up to 100 of A-Z a-z 0-9 . _ - (not starting with '.')"
    return None


def ref_problem(ref: str) -> str | None:
    """Why `ref` cannot name a bundle ("NAME" or "NAME@VERSION"), or None if it can."""
    try:
        msgspec.convert(ref, type=BundleRef)
    except msgspec.ValidationError:
        return f"{ref!r} does not name a bundle: NAME or NAME@VERSION (NAME: A-Z a-z 0-9 . _ -, VERSION: 1, 2, ...)"
    return None


def split_ref(ref: str) -> tuple[str, int | None]:
    """ "NAME@N" as (NAME, N); "NAME" as (NAME, None). The ref was validated on decode (BundleRef)."""
    name, _, version = ref.partition("@")
    return name, int(version) if version else None

"""Pushing a directory as a bundle: its manifest, then only the files the broker does not hold.

Rules:
- A bundle holds the regular files under DIR (nothing is skipped, `.git/` included: what you push is
  what runs). A symbolic link to a regular file inside DIR is stored as that file; a link that leads
  out of DIR is refused, naming it, unless `follow_links` says to store what it points to (a link in
  a project to ~/.ssh/id_rsa must not travel by accident). Any other link (to a directory, dangling)
  or special file is refused, naming it. Empty directories are not kept.
- Each file is a content-addressed blob: the broker answers a push with the blobs it lacks, only
  those are uploaded, and then the push is made again. An unchanged file never travels twice.
- Uploads are resumable: each missing blob starts with an empty piece that asks the broker how much
  of it it holds already (a push that broke off goes on where it stopped), and is read from the file
  piece by piece, never whole into memory.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import anyio

from gridd.client.connection import Connection
from gridd.protocol.bundles import manifest_problem
from gridd.protocol.errors import BadFrame, ConfigError, InvalidRequest, PayloadTooLarge
from gridd.protocol.messages import (
    BLOB_CHUNK_BYTES,
    MAX_BLOB_BYTES,
    MAX_BUNDLE_FILES,
    BundleFile,
    BundlePushed,
    BundleView,
    GetBundle,
    ListBundles,
    PushBundle,
    PutBlob,
)

_READ_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class PushReport:
    """What a push did: the version that holds the directory, and what travelled to make it."""

    name: str
    version: int
    created: bool
    files: int
    bytes: int
    uploaded_files: int
    uploaded_bytes: int


async def push(conn: Connection, name: str, directory: Path, *, follow_links: bool = False) -> PushReport:
    """Make the files under `directory` the next version of bundle `name` (or find the version that
    already holds exactly them). `follow_links`: store what links out of `directory` point to."""
    files, sources = await anyio.to_thread.run_sync(scan, directory, follow_links)
    reply: BundlePushed = await conn.request(lambda rid: PushBundle(rid=rid, name=name, files=files))
    sent_files = sent_bytes = 0
    if reply.missing:
        sizes = {f.blob: f.size for f in files}
        for blob in reply.missing:
            sent_bytes += await upload_file(conn, sources[blob], blob, sizes[blob])
            sent_files += 1
        reply = await conn.request(lambda rid: PushBundle(rid=rid, name=name, files=files))
        if reply.missing:  # the broker holds what it acknowledged: this would be a bug
            raise BadFrame(f"the broker still lacks {len(reply.missing)} files of bundle {name} after their upload")
    return PushReport(
        name=name,
        version=reply.version,
        created=reply.created,
        files=len(files),
        bytes=sum(f.size for f in files),
        uploaded_files=sent_files,
        uploaded_bytes=sent_bytes,
    )


async def upload_file(conn: Connection, path: Path, blob: str, size: int) -> int:
    """Put the file at `path` (content `blob`, `size` bytes) in the broker, from wherever the broker's
    copy stopped; returns the bytes sent. Content the broker found not to hash to `blob` is sent once
    more, whole: someone else's false partial upload of it was discarded, or the file changed."""
    try:
        return await _send(conn, path, blob, size)
    except InvalidRequest:
        pass
    try:
        return await _send(conn, path, blob, size)
    except InvalidRequest as exc:
        raise InvalidRequest(f"{path} changed while it was pushed ({exc}); push again") from None


async def _send(conn: Connection, path: Path, blob: str, size: int) -> int:
    sent = 0
    offset = 0
    data = b""  # the first request only asks how much the broker holds
    while True:
        reply = await conn.request(
            lambda rid: PutBlob(rid=rid, blob=blob, size=size, offset=offset, data=data)  # noqa: B023 - at once
        )
        sent += len(data)
        if reply.have >= size:
            return sent
        if data and reply.have <= offset:
            raise BadFrame(f"the broker kept no progress on {path} (at {reply.have} of {size} bytes)")
        offset = reply.have
        data = await anyio.to_thread.run_sync(_read_piece, path, offset)
        if not data:
            raise InvalidRequest("it is shorter now")


async def list_versions(conn: Connection, name: str | None = None) -> list[BundleView]:
    """Every version of every bundle (or of bundle `name`), by name then version."""
    reply = await conn.request(lambda rid: ListBundles(rid=rid, name=name))
    return list(reply.bundles)


async def manifest(conn: Connection, ref: str) -> tuple[BundleView, list[BundleFile]]:
    """The version `ref` names ("NAME@N", or "NAME": the latest) and its files."""
    reply = await conn.request(lambda rid: GetBundle(rid=rid, ref=ref))
    return reply.bundle, list(reply.files)


def scan(directory: Path, follow_links: bool = False) -> tuple[list[BundleFile], dict[str, Path]]:
    """The manifest of `directory` (sorted by path), and a file holding each blob. Blocking."""
    if not directory.is_dir():
        what = "does not exist" if not directory.exists() else "is not a directory"
        raise ConfigError(f"{directory} {what}")
    found = _walk(directory)
    if not follow_links:
        _refuse_links_out(directory, found)
    files: list[BundleFile] = []
    sources: dict[str, Path] = {}
    for path in found:
        rel = path.relative_to(directory).as_posix()
        info = _regular(path)
        if info.st_size > MAX_BLOB_BYTES:
            raise PayloadTooLarge(f"{path} is {info.st_size:,} bytes; a bundle's files may have {MAX_BLOB_BYTES:,}")
        blob = _sha256(path)
        sources.setdefault(blob, path)
        executable = bool(info.st_mode & stat.S_IXUSR)
        files.append(BundleFile(path=rel, blob=blob, size=info.st_size, executable=executable))
        if len(files) > MAX_BUNDLE_FILES:
            raise ConfigError(f"{directory} has more than {MAX_BUNDLE_FILES:,} files; a bundle may hold that many")
    files.sort(key=lambda f: f.path)
    problem = manifest_problem(files)
    if problem is not None:
        raise ConfigError(f"{directory}: {problem}")
    return files, sources


def _walk(directory: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, names in os.walk(directory, onerror=_walk_error):
        for d in dirs:
            if os.path.islink(os.path.join(root, d)):
                raise ConfigError(f"{os.path.join(root, d)} is a link to a directory; bundles hold regular files")
        found.extend(Path(root, n) for n in names)
    return found


def _refuse_links_out(directory: Path, paths: list[Path]) -> None:
    """InvalidRequest naming the links among `paths` whose target is not inside `directory`."""
    root = os.path.realpath(directory)
    out = []
    for path in sorted(paths):
        if os.path.islink(path):
            target = os.path.realpath(path)
            if os.path.commonpath([root, target]) != root:
                out.append(f"{path} -> {target}")
    if out:
        more = f" (and {len(out) - 3} more)" if len(out) > 3 else ""
        raise InvalidRequest(
            f"links lead out of {directory}: {', '.join(out[:3])}{more};"
            " push with --follow-links to upload what they point to"
        )


def _walk_error(exc: OSError) -> None:
    raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}")


def _regular(path: Path) -> os.stat_result:
    try:
        info = path.stat()  # follows a link: a link to a file is stored as the file
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read ({exc.strerror}); a dangling link?") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path} is not a regular file; bundles hold regular files only")
    return info


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while block := f.read(_READ_BYTES):
                digest.update(block)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return digest.hexdigest()


def _read_piece(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(BLOB_CHUNK_BYTES)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None

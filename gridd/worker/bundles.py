"""A worker's bundle cache, and running a job inside its bundle.

Rules:
- The cache lives beside the worker's work dir (`WORKDIR.bundles/`, under the same lock), not in it:
  the work dir is emptied at start, the cache survives restarts. It holds
  `blobs/XX/SHA256` (one read-only file per content, whatever bundle or version it came from),
  `partial/SHA256` (a download in progress) and `versions/NAME/N` (a version's manifest, written once
  every one of its blobs is in `blobs/`).
- Preparing a version downloads only the contents `blobs/` lacks, so a push that changed one file
  makes exactly that file travel. A download goes on from what `partial/` holds (after a lost
  connection or a restart), and a file enters `blobs/` only once its sha256 matches its name.
- Preparing runs in the job's own task, through the agent's connection-surviving call: it never holds
  up heartbeats, lease requests or other jobs. The same version prepared by two jobs at once is
  fetched once (single flight), and so is a blob two versions share.
- A job never sees the cache: each attempt's working directory is a fresh copy of the bundle's files
  (executable or not, as pushed), so nothing a job does reaches the next one. Copies, not hard links:
  a job could chmod and write through a link. There is no size limit or eviction yet.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import anyio
import msgspec
import structlog

from gridd.client import bundles as remote
from gridd.client.connection import Connection
from gridd.clock import Clock
from gridd.protocol.bundles import manifest_problem, split_ref
from gridd.protocol.errors import BundleUnavailable, GriddError
from gridd.protocol.messages import BundleFile, GetBlob, JobResult, LeasedJob, OutputChunk
from gridd.worker.runner import Pause, RunSettings, run_attempt

log = structlog.get_logger()

T = TypeVar("T")
_encoder = msgspec.msgpack.Encoder()
_manifest_decoder = msgspec.msgpack.Decoder(list[BundleFile])


class ConnectedCall(Protocol):
    """The agent's way to run a call on the broker connection, again on the next one if it is lost."""

    async def __call__(self, call: Callable[[Connection], Awaitable[T]], /) -> T: ...


@dataclass(frozen=True, slots=True)
class PreparedBundle:
    """A version whose every file is in the cache: it can be copied into a job's directory."""

    ref: str  # NAME@N
    files: tuple[BundleFile, ...]
    blobs: Path

    def materialise(self, cwd: Path) -> None:
        """Copy the bundle's files into the (empty) directory `cwd`. Blocking: the attempt's thread."""
        for f in self.files:
            target = cwd / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_blob_path(self.blobs, f.blob), target)
            os.chmod(target, 0o755 if f.executable else 0o644)


class BundleCache:
    """Bundle versions on this worker's disk, fetched on first use."""

    def __init__(self, root: Path, call: ConnectedCall) -> None:
        self._root = root
        self._blobs = root / "blobs"
        self._call = call
        self._ready: dict[str, PreparedBundle] = {}
        self._locks: dict[str, anyio.Lock] = {}

    async def prepare(self, ref: str) -> PreparedBundle:
        """The version `ref` ("NAME@N") with every file in the cache, fetching what is missing."""
        ready = self._ready.get(ref)
        if ready is not None:
            return ready
        async with self._single_flight(f"version:{ref}"):
            ready = self._ready.get(ref) or await self._fetch(ref)
        if "@" in ref:  # a pinned version never changes; a bare NAME (latest) is asked for each time
            self._ready[ref] = ready
        return ready

    async def _fetch(self, ref: str) -> PreparedBundle:
        name, version = split_ref(ref)
        saved = await anyio.to_thread.run_sync(self._saved_manifest, name, version)
        if saved is not None and version is not None:
            files = saved
        else:
            view, files = await self._call(lambda conn: remote.manifest(conn, ref))
            name, version = view.name, view.version
            problem = manifest_problem(files)
            if problem is not None:  # never trusted: these paths are written under a job's directory
                raise BundleUnavailable(f"bundle {ref} has a bad manifest: {problem}")
        pinned = f"{name}@{version}"
        sizes = {f.blob: f.size for f in files}
        held = await anyio.to_thread.run_sync(lambda: {b for b in sizes if _blob_path(self._blobs, b).exists()})
        fetched_bytes = 0
        for blob in sorted(sizes.keys() - held):
            fetched_bytes += await self._download(blob, sizes[blob])
        await anyio.to_thread.run_sync(self._save_manifest, name, version, files)
        log.info(
            "bundle.fetched",
            bundle=pinned,
            files=len(sizes) - len(held),
            bytes=fetched_bytes,
            cached=len(held),
        )
        return PreparedBundle(pinned, tuple(files), self._blobs)

    async def _download(self, blob: str, size: int) -> int:
        """Bring one content into `blobs/`; returns the bytes received (0 if another job brought it)."""
        async with self._single_flight(f"blob:{blob}"):
            received = 0
            for _ in range(2):  # a damaged partial file (a crash mid-write) is fetched once more, whole
                if _blob_path(self._blobs, blob).exists():
                    return received
                received += await self._call(lambda conn: self._receive(conn, blob, size))
                if await anyio.to_thread.run_sync(self._settle, blob):
                    return received
            raise BundleUnavailable(f"a file of {size:,} bytes (content {blob[:12]}) arrived damaged twice")

    async def _receive(self, conn: Connection, blob: str, size: int) -> int:
        """Fetch the rest of `blob` into `partial/` from where it stands; returns the bytes received."""
        part = self._root / "partial" / blob
        offset = await anyio.to_thread.run_sync(_resume_at, part, size)
        received = 0
        while offset < size:
            reply = await conn.request(lambda rid: GetBlob(rid=rid, blob=blob, offset=offset))  # noqa: B023 - at once
            if reply.size != size or not reply.data:
                raise BundleUnavailable(f"the broker's copy of content {blob[:12]} is not the {size:,} bytes expected")
            await anyio.to_thread.run_sync(_write_at, part, offset, reply.data)
            offset += len(reply.data)
            received += len(reply.data)
        return received

    def _settle(self, blob: str) -> bool:
        """Move a complete download into `blobs/` if its sha256 is its name; else discard it."""
        part = self._root / "partial" / blob
        part.parent.mkdir(parents=True, exist_ok=True)
        part.touch()  # an empty content has nothing to download
        digest = hashlib.sha256()
        with part.open("rb") as f:
            while block := f.read(1024 * 1024):
                digest.update(block)
        if digest.hexdigest() != blob:
            part.unlink()
            log.warning("bundle.damaged_download", blob=blob)
            return False
        target = _blob_path(self._blobs, blob)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(part, 0o444)
        os.replace(part, target)
        return True

    def _saved_manifest(self, name: str, version: int | None) -> list[BundleFile] | None:
        if version is None:
            return None
        try:
            return _manifest_decoder.decode((self._root / "versions" / name / str(version)).read_bytes())
        except (OSError, msgspec.DecodeError):
            return None

    def _save_manifest(self, name: str, version: int, files: list[BundleFile]) -> None:
        path = self._root / "versions" / name / str(version)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{version}.tmp")
        temp.write_bytes(_encoder.encode(files))
        os.replace(temp, path)

    @asynccontextmanager
    async def _single_flight(self, key: str) -> AsyncIterator[None]:
        """One task at a time for `key`; the lock is forgotten once nobody holds or awaits it."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = anyio.Lock()
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._locks.pop(key, None)


async def run_in_bundle(
    job: LeasedJob,
    cache: BundleCache,
    settings: RunSettings,
    clock: Clock,
    on_output: Callable[[list[OutputChunk]], None] | None = None,
    pause: Pause | None = None,
) -> JobResult:
    """Run the job's attempt in a fresh copy of its bundle; a bundle that cannot be had fails the
    attempt (outcome "error") with a message saying why."""
    ref = job.spec.bundle or ""
    started = clock.now_ms()
    try:
        prepared = await cache.prepare(ref)
    except (GriddError, OSError) as exc:
        why = f"cannot fetch bundle {ref}: {exc}"
        log.warning("bundle.unavailable", job_id=job.job_id, bundle=ref, error=str(exc))
        return JobResult(
            job_id=job.job_id,
            lease=job.lease,
            exit_code=None,
            outcome="error",
            started_ms=started,
            ended_ms=clock.now_ms(),
            stderr=f"gridd: {why}\n".encode(),
            message=why,
            bundle=ref,
        )
    spec = msgspec.structs.replace(job.spec, env={**job.spec.env, "GRIDD_BUNDLE": prepared.ref})
    result = await run_attempt(
        msgspec.structs.replace(job, spec=spec), settings, clock, on_output, pause, setup=prepared.materialise
    )
    return msgspec.structs.replace(result, bundle=prepared.ref)


def _blob_path(blobs: Path, blob: str) -> Path:
    return blobs / blob[:2] / blob


def _resume_at(part: Path, size: int) -> int:
    """How much of a download `part` holds already (0 if none, or if it is somehow longer than whole)."""
    try:
        have = part.stat().st_size
    except FileNotFoundError:
        return 0
    if have > size:
        part.unlink()
        return 0
    return have


def _write_at(part: Path, offset: int, data: bytes) -> None:
    part.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
    finally:
        os.close(fd)

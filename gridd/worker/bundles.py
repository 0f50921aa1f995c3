"""A worker's bundle cache, and running a job inside its bundle.

Rules:
- The cache lives beside the worker's work dir (`WORKDIR.bundles/`, under the same lock), not in it:
  the work dir is emptied at start, the cache survives restarts. It holds `blobs/XX/SHA256` (one file
  per content, whatever bundle or version it came from) and `partial/SHA256` (a download in
  progress). A version's manifest is asked of the broker the first time this worker process runs it
  and is kept in memory only: a file on disk could be rewritten by a job.
- Preparing a version downloads only the contents `blobs/` lacks, so a push that changed one file
  makes exactly that file travel. A download goes on from what `partial/` holds (after a lost
  connection or a restart), and a file enters `blobs/` only once its sha256 matches its name.
- Preparing runs in the job's own task, through the agent's connection-surviving call: it never holds
  up heartbeats, lease requests or other jobs. The same version prepared by two jobs at once is
  fetched once (single flight), and so is a blob two versions share.
- A job never sees the cache: each attempt's working directory is a fresh copy of the bundle's files
  (executable or not, as pushed), checked against their sha256 as it is made (gridd.worker.
  bundle_staging), so nothing a job does reaches the next one. Copies, not links into the cache: a
  job could chmod and write through a link. The cache is the worker's user's alone (0700): jobs that
  run as another user (gridd.worker.job_users) cannot enter it, and the runner hands each copy to its
  job's user. Jobs that run as the worker's user could still reach the cache: its files and `blobs/`
  directories are read-only (0444, 0555) against accidents, and the check at each copy is what holds
  against intent. A content that fails it is dropped and fetched again, never used. There is no size
  limit or eviction yet.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import anyio
import msgspec
import structlog

from gridd.client import bundles as remote
from gridd.client.connection import Connection
from gridd.clock import Clock
from gridd.protocol.bundles import manifest_problem
from gridd.protocol.errors import BundleUnavailable, GriddError
from gridd.protocol.messages import BundleFile, GetBlob, JobResult, LeasedJob, OutputChunk
from gridd.worker.bundle_staging import blob_path, intact, stage
from gridd.worker.runner import Pause, RunSettings, run_attempt

log = structlog.get_logger()

T = TypeVar("T")


class ConnectedCall(Protocol):
    """The agent's way to run a call on the broker connection, again on the next one if it is lost."""

    async def __call__(self, call: Callable[[Connection], Awaitable[T]], /) -> T: ...


@dataclass(frozen=True, slots=True)
class PreparedBundle:
    """A version whose every file is in the cache: it can be copied into a job's directory."""

    ref: str  # NAME@N
    files: tuple[BundleFile, ...]


class BundleCache:
    """Bundle versions on this worker's disk, fetched on first use."""

    def __init__(self, root: Path, call: ConnectedCall) -> None:
        self._root = root
        self._blobs = root / "blobs"
        self._call = call
        self._ready: dict[str, PreparedBundle] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._unsealing = threading.Lock()  # one thread at a time opens a read-only directory to write

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

    async def stage(self, prepared: PreparedBundle, staging: Path) -> None:
        """Fill the new directory `staging` with the version's files, each checked as it is copied; a
        cached content that fails is dropped and fetched again (once), never used."""
        sizes = {f.blob: f.size for f in prepared.files}
        for _ in range(2):
            damaged = await anyio.to_thread.run_sync(stage, prepared.files, self._blobs, staging)
            if not damaged:
                return
            await anyio.to_thread.run_sync(_remove_tree, staging)
            for blob in damaged:
                await self._repair(prepared.ref, blob, sizes[blob])
        raise BundleUnavailable(f"a file of bundle {prepared.ref} was damaged in this worker's cache twice")

    async def _repair(self, ref: str, blob: str, size: int) -> None:
        """Drop a cached content found damaged and fetch it again, unless another job just did."""
        async with self._single_flight(f"blob:{blob}"):
            if await anyio.to_thread.run_sync(intact, blob_path(self._blobs, blob), blob, size):
                return
            log.warning("bundle.damaged_cache", bundle=ref, blob=blob)
            await anyio.to_thread.run_sync(self._drop, blob)
            await self._download_now(blob, size)

    async def _fetch(self, ref: str) -> PreparedBundle:
        view, files = await self._call(lambda conn: remote.manifest(conn, ref))
        problem = manifest_problem(files)
        if problem is not None:  # never trusted: these paths are written under a job's directory
            raise BundleUnavailable(f"bundle {ref} has a bad manifest: {problem}")
        pinned = f"{view.name}@{view.version}"
        sizes = {f.blob: f.size for f in files}
        held = await anyio.to_thread.run_sync(lambda: {b for b in sizes if blob_path(self._blobs, b).exists()})
        fetched_bytes = 0
        for blob in sorted(sizes.keys() - held):
            fetched_bytes += await self._download(blob, sizes[blob])
        log.info(
            "bundle.fetched",
            bundle=pinned,
            files=len(sizes) - len(held),
            bytes=fetched_bytes,
            cached=len(held),
        )
        return PreparedBundle(pinned, tuple(files))

    async def _download(self, blob: str, size: int) -> int:
        """Bring one content into `blobs/`; returns the bytes received (0 if another job brought it)."""
        async with self._single_flight(f"blob:{blob}"):
            return await self._download_now(blob, size)

    async def _download_now(self, blob: str, size: int) -> int:
        received = 0
        for _ in range(2):  # a damaged partial file (a crash mid-write) is fetched once more, whole
            if blob_path(self._blobs, blob).exists():
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
        target = blob_path(self._blobs, blob)
        os.chmod(part, 0o444)
        with self._unsealed(target.parent):
            os.replace(part, target)
        return True

    def _drop(self, blob: str) -> None:
        """Remove a cached content that failed its check (it is fetched again)."""
        target = blob_path(self._blobs, blob)
        with self._unsealed(target.parent):
            target.unlink(missing_ok=True)

    @contextmanager
    def _unsealed(self, directory: Path) -> Iterator[None]:
        """`blobs/` and its subdirectory `directory` writable for the block, read-only again after."""
        with self._unsealing:
            for d in (self._blobs, directory):
                d.mkdir(parents=True, exist_ok=True)
                os.chmod(d, 0o755)
            try:
                yield
            finally:
                for d in (directory, self._blobs):
                    os.chmod(d, 0o555)

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
        return _not_run(job, started, clock.now_ms(), why, ref)
    staging = settings.work_dir / f".{job.job_id}.{job.lease}.bundle"
    placed = False

    def place(cwd: Path) -> None:
        """The runner made the attempt's empty directory: the checked copy takes its place, in one rename."""
        nonlocal placed
        os.replace(staging, cwd)
        placed = True

    try:
        try:
            await cache.stage(prepared, staging)
        except (GriddError, OSError) as exc:
            why = f"cannot copy bundle {prepared.ref}: {exc}"
            log.warning("bundle.unavailable", job_id=job.job_id, bundle=prepared.ref, error=str(exc))
            return _not_run(job, started, clock.now_ms(), why, prepared.ref)
        spec = msgspec.structs.replace(job.spec, env={**job.spec.env, "GRIDD_BUNDLE": prepared.ref})
        result = await run_attempt(
            msgspec.structs.replace(job, spec=spec), settings, clock, on_output, pause, setup=place
        )
    finally:
        if not placed:  # the attempt never began (or the copy failed): nothing else removes it
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_remove_tree, staging)
    return msgspec.structs.replace(result, bundle=prepared.ref)


def _not_run(job: LeasedJob, started: int, ended: int, why: str, ref: str) -> JobResult:
    return JobResult(
        job_id=job.job_id,
        lease=job.lease,
        exit_code=None,
        outcome="error",
        started_ms=started,
        ended_ms=ended,
        stderr=f"gridd: {why}\n".encode(),
        message=why,
        bundle=ref,
    )


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


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

"""The worker's work directory: only a directory the worker made (or adopted empty) and marked as its
own is ever emptied by it, and the mark holds the worker's instance id.

Rules:
- A worker deletes nothing in a directory without its marker file. It creates and marks a missing
  directory, adopts (marks) an existing empty one, and refuses any other existing path, deleting nothing.
- Emptying keeps the marker, and never follows a symbolic link out of the directory: a link a job left
  behind is removed itself, never its target.
- The instance id is made once, at the first start, and kept in the marker: the broker binds the leases it
  grants to it, so that only this worker (not merely one of the same name) may re-attach or give them up.
- The directory belongs to the worker's user, mode 0700; 0711 when jobs run as other users (they must
  pass through it to their own attempt directory, 0700 each, but may not list it). An existing one with
  another mode is set to that at start, and logged. The marker is 0600.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
from pathlib import Path

import structlog

from gridd.protocol.errors import WorkDirNotOwned
from gridd.worker import host_os

log = structlog.get_logger()

MARKER = ".gridd-worker"
_INSTANCE = re.compile(r"^instance = ([0-9a-f]{32})$", re.MULTILINE)


def check_work_dir(work_dir: Path) -> None:
    """Refuse, before anything is made beside it, a work dir this worker may not use (WorkDirNotOwned)."""
    if not work_dir.exists() and not work_dir.is_symlink():
        return
    if not work_dir.is_dir():
        raise WorkDirNotOwned(f"the work directory {work_dir} exists and is not a directory; give another --work-dir")
    if _is_marked(work_dir) or _is_empty(work_dir):
        return
    raise WorkDirNotOwned(
        f"the work directory {work_dir} holds files and is not a gridd worker's (it has no {MARKER} file);"
        " nothing was deleted: give an empty or new --work-dir"
    )


def claim_work_dir(work_dir: Path, mode: int = 0o700) -> str:
    """Make, adopt or empty the work dir (after check_work_dir, under the work dir's lock) and give it
    `mode`; returns the worker's instance id."""
    check_work_dir(work_dir)
    make_private_dir(work_dir, mode)
    marker = work_dir / MARKER
    instance = _read_instance(marker) if _is_marked(work_dir) else None
    if instance is None:
        instance = secrets.token_hex(16)
        _write_marker(marker, instance)
    else:
        os.chmod(marker, 0o600)  # one an older gridd wrote readable by all
    _empty_but_marker(work_dir)
    return instance


def make_private_dir(path: Path, mode: int = 0o700) -> None:
    """Make `path` (and missing parents) if need be, owned by this process's user and of exactly `mode`;
    an existing one that differed is logged."""
    existed = path.is_dir()
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    st = path.stat()
    if host_os.effective_uid() == 0 and st.st_uid != 0:
        host_os.give_to_root(path)  # e.g. made by the unprivileged user an older unit ran the worker as
        log.warning("worker.dir_owner_changed", path=str(path), was_uid=st.st_uid)
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)  # a fresh one too: the umask may have taken bits off
        if existed:
            was = f"{stat.S_IMODE(st.st_mode):04o}"
            log.info("worker.dir_mode_changed", path=str(path), was=was, now=f"{mode:04o}")


def _is_marked(work_dir: Path) -> bool:
    marker = work_dir / MARKER
    return marker.is_file() and not marker.is_symlink()


def _is_empty(work_dir: Path) -> bool:
    with os.scandir(work_dir) as entries:
        return next(entries, None) is None


def _read_instance(marker: Path) -> str | None:
    try:
        found = _INSTANCE.search(marker.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    return found.group(1) if found else None


def _write_marker(marker: Path, instance: str) -> None:
    """Written whole or not at all: a new file renamed over the marker."""
    text = (
        "# A gridd worker's work directory. When that worker starts, it deletes everything here but this file.\n"
        "# The instance id tells the broker that a reconnecting worker of this name is this one.\n"
        f"instance = {instance}\n"
    )
    partial = marker.with_name(f"{MARKER}.new")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(partial, marker)


def _empty_but_marker(work_dir: Path) -> None:
    """Remove what a previous run of this worker left (attempt directories of jobs it was running when it
    stopped). What cannot be removed is logged and left: new attempts never reuse a name."""

    def leftover(_fn: object, path: str, exc_info: tuple[type[BaseException], BaseException, object]) -> None:
        log.warning("worker.work_dir_leftover", path=path, error=str(exc_info[1]))

    with os.scandir(work_dir) as entries:
        for entry in entries:
            if entry.name == MARKER:
                continue
            # is_dir(follow_symlinks=False): a link is unlinked, never entered; rmtree itself never
            # follows the links it finds inside (it works on file descriptors, O_NOFOLLOW).
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, onerror=leftover)
                continue
            try:
                os.unlink(entry.path)
            except OSError as exc:
                log.warning("worker.work_dir_leftover", path=entry.path, error=str(exc))

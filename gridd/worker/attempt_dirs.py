"""Attempt directories: each attempt's fresh, empty working directory, made and removed.

An empty directory an attempt leaves, with the mode it was made with, is kept (renamed to a spare name)
and renamed into place for a later attempt, instead of removed and made anew: on ext4 each mkdir
allocates an inode, and with thousands of short jobs freeing them, finding a free one costs more than
the job (`recently_deleted`). Only directories of jobs that ran as the worker's own user are kept: one
handed to another user could carry what that user set on it. A spare is as empty as a new directory, so
the job cannot tell the difference; spares left when the worker stops are removed at its next start,
with the rest of the work dir (gridd.worker.workdir).
"""

from __future__ import annotations

import itertools
import os
import shutil
import stat
import threading
from pathlib import Path

from gridd.worker import host_os

__all__ = ["AttemptDirs", "attempt_dirs"]

MAX_SPARE = 16  # more than the attempts that end at once on any worker; past it, directories are removed
SPARE_PREFIX = ".spare-"  # never the name of an attempt's directory (JOB_ID.LEASE)
DIR_MODE = 0o700


class AttemptDirs:
    """The spare directories of one work dir, shared by the attempts' threads."""

    def __init__(self, work_dir: Path) -> None:
        self._work_dir = work_dir
        self._lock = threading.Lock()
        self._spare: list[Path] = []
        self._names = itertools.count()

    def make(self, cwd: Path) -> None:
        """`cwd` (in the work dir), new and empty, mode 0700; OSError if it cannot be made."""
        with self._lock:
            spare = self._spare.pop() if self._spare else None
        if spare is not None:
            try:
                os.rename(spare, cwd)
                return
            except OSError:
                _remove(spare)  # whatever happened to it: make one instead
        cwd.mkdir(mode=DIR_MODE)

    def done(self, cwd: Path, *, keep: bool) -> None:
        """The attempt in `cwd` is over: keep the directory as a spare if `keep` and it is as it was made
        (empty, a directory, the worker's own, mode 0700), else remove it and all in it."""
        if keep and self._as_made(cwd):
            with self._lock:
                room = len(self._spare) < MAX_SPARE
                name = self._work_dir / f"{SPARE_PREFIX}{next(self._names)}" if room else None
            if name is not None:
                try:
                    os.rename(cwd, name)
                except OSError:
                    pass
                else:
                    with self._lock:
                        self._spare.append(name)
                    return
        _remove(cwd)

    @staticmethod
    def _as_made(cwd: Path) -> bool:
        try:
            st = os.lstat(cwd)
            made = stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == DIR_MODE
            if not made or st.st_uid != host_os.effective_uid():
                return False
            with os.scandir(cwd) as entries:
                return next(entries, None) is None
        except OSError:
            return False


_BY_WORK_DIR: dict[Path, AttemptDirs] = {}
_BY_WORK_DIR_LOCK = threading.Lock()


def attempt_dirs(work_dir: Path) -> AttemptDirs:
    """The one AttemptDirs of `work_dir` in this process (a worker has one work dir; tests run several)."""
    with _BY_WORK_DIR_LOCK:
        found = _BY_WORK_DIR.get(work_dir)
        if found is None:
            found = _BY_WORK_DIR[work_dir] = AttemptDirs(work_dir)
        return found


def _remove(cwd: Path) -> None:
    """Remove an attempt's working directory: with one rmdir when the job left it empty."""
    try:
        os.rmdir(cwd)
    except FileNotFoundError:
        pass
    except OSError:
        shutil.rmtree(cwd, ignore_errors=True)

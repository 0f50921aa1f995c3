"""The broker's data dir is its own: 0700, the database files 0600.

The database holds every job's command, --env and output: another local user must not read them (nor
the WAL, which holds recent ones in the clear). A data dir made by an older gridd (0755, 0644) is
tightened at start, and that is logged. SQLite gives the WAL and shared-memory files the mode of the
database file, so a database made 0600 keeps them 0600 too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import structlog

log = structlog.get_logger()

DB_FILE = "gridd.db"
_DB_FILES = (DB_FILE, f"{DB_FILE}-wal", f"{DB_FILE}-shm", f"{DB_FILE}-journal")


def secure_data_dir(data_dir: Path) -> Path:
    """Make (or tighten) the data dir and its database files; returns the database's path."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(data_dir, 0o700)
    for name in _DB_FILES:
        _tighten(data_dir / name, 0o600)
    db = data_dir / DB_FILE
    if not db.exists():  # made empty and private here: SQLite would make it with the umask's mode
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))
    return db


def _tighten(path: Path, mode: int) -> None:
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if current & 0o077:
        os.chmod(path, mode)
        log.warning("data_dir.tightened", path=str(path), was=f"{current:04o}", now=f"{mode:04o}")

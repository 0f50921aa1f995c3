"""What every module of the SQLite store shares: a statement's rows, a list of ids for json_each, and job
states as SQL literals.

Rule: a state is written into SQL text only through `state` and `states`, from the enum's members
(constants, never input), so constant statements can still match a partial index's WHERE word for word.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from gridd.protocol.states import JobState


def rows(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    return db.execute(sql, params).fetchall()


def ids_json(ids: Iterable[int]) -> str:
    """Ids as one parameter: `id IN (SELECT value FROM json_each(?))` reads them."""
    return json.dumps(list(ids))


def state(member: JobState) -> str:
    """A state as an SQL string literal (the member's name in single quotes)."""
    return f"'{JobState(member)}'"


def states(members: Iterable[JobState]) -> str:
    """States as an SQL list of literals, for IN, in the order given."""
    return "(" + ", ".join(state(m) for m in members) + ")"

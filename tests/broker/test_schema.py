"""A released migration is never edited: a database an older gridd made was migrated by the text that
gridd had, so each released script keeps its text to the byte (its states are now written from the enum,
which must not change them). A change of schema is a new migration, appended."""

from __future__ import annotations

import hashlib

from gridd.broker.schema import MIGRATIONS

RELEASED = [  # sha256 of each released migration's text, first 16 hex digits
    "167c7776c0a3703f",
    "c50dfdc2fa791a3a",
    "f6628b90be6540cf",
    "7993f3ba897f7502",
    "df76746790083812",
    "71e95878258fc189",
    "a544ec9fcac642f1",
    "8da6bd3fc323f319",
    "46e791738184b1f6",
]


def test_every_released_migration_keeps_its_text_to_the_byte() -> None:
    digests = [hashlib.sha256(script.encode()).hexdigest()[:16] for script in MIGRATIONS]
    assert digests[: len(RELEASED)] == RELEASED

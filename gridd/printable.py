"""Text from the grid made safe to show a person: control characters written as escapes.

Commands, worker names, reasons and job output come from other people's machines. Written raw to a
terminal, an escape sequence can move the cursor, rewrite what was printed before, set the window
title or hide text; a bidirectional override can make a command read differently from what runs. So
everything gridd prints for a person goes through `printable` first: C0 and C1 control characters,
DEL and the bidi controls become visible escapes (`\\x1b`, `\\u202e`), and the rest is left as it is.
Scripts read `--json` (which escapes them its own way) or `logs` into a pipe, byte for byte.
"""

from __future__ import annotations

import re

_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
# Compiled on first use (re keeps it): `gridd status` and `show` print no output of a job's (start-up).
_UNSAFE_KEEP_LINES = f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]"


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """One line for a table cell or a message: every control character escaped, newlines included."""
    return _UNSAFE.sub(_escape, text)


def printable_lines(text: str) -> str:
    """Output for a terminal: lines and tabs kept, every other control character escaped."""
    return re.sub(_UNSAFE_KEEP_LINES, _escape, text)

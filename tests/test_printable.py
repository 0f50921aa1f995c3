"""Text from the grid is written for a person with its control characters escaped."""

from __future__ import annotations

from gridd.printable import printable, printable_lines


def test_escape_sequences_newlines_and_bidi_overrides_become_visible() -> None:
    """An ESC, a bell, a carriage return, a C1 CSI and a right-to-left override cannot act on a terminal."""
    hostile = "rm\x1b[2J\x1b]0;title\x07x\r\nok\x9b31m\u202egnp.exe"
    shown = printable(hostile)
    assert shown == "rm\\x1b[2J\\x1b]0;title\\x07x\\x0d\\x0aok\\x9b31m\\u202egnp.exe"
    assert shown.isprintable()


def test_output_keeps_its_lines_and_tabs_but_not_its_escapes() -> None:
    assert printable_lines("a\tb\nc\x1b[31mred\x1b[0m\r") == "a\tb\nc\\x1b[31mred\\x1b[0m\\x0d"


def test_plain_text_and_other_scripts_are_left_alone() -> None:
    text = "python train.py --lr=0.1 «données» 日本語 [bold]"
    assert printable(text) == text

"""The last lines of a job's stdout or stderr, shown as plain text (never as markup)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class OutputTail(Static):
    """A tail of captured output; `text` is what it shows."""

    DEFAULT_CSS = """
    OutputTail { height: auto; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("loading…", id=id, markup=False)
        self.text = ""

    def show(self, text: str) -> None:
        """Replace the tail."""
        self.text = text
        self.update(Text(text))

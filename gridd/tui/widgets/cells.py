"""Table cells from the grid's text: shown as they are, never read as markup or as terminal controls."""

from __future__ import annotations

from rich.text import Text

from gridd.printable import printable


def cell(text: str) -> Text:
    """A DataTable cell. A str cell would be parsed as Rich markup (a command holding `[/]` would stop
    the dashboard); control characters are escaped (gridd.printable)."""
    return Text(printable(text), end="")

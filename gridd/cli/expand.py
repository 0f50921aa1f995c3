"""Many jobs from one command line: `--each FILE` (one job per line) and `--array A-B[:STEP]`.

As `xargs -I{}` does, `{}` is replaced by the item wherever it appears in an argument, with no shell
parsing; when no argument holds `{}`, the item is appended as one last argument.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from gridd.protocol.errors import ConfigError

PLACEHOLDER = "{}"


def each_items(source: str) -> list[str]:
    """The non-empty lines of FILE (`-`: standard input), line endings removed and nothing else."""
    try:
        data = sys.stdin.buffer.read() if source == "-" else open(source, "rb").read()  # noqa: SIM115
    except OSError as exc:
        raise ConfigError(f"--each: cannot read {source}: {exc.strerror or exc}") from exc
    items = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if not line:
            continue
        try:
            items.append(line.decode())
        except UnicodeDecodeError:
            raise ConfigError(f"--each: line {number} of {source} is not UTF-8 text") from None
    return items


def array_items(spec: str) -> list[int]:
    """A-B[:STEP] (or a single index) as the list of indexes."""
    span, _, step_text = spec.partition(":")
    first_text, dash, last_text = span.partition("-")
    try:
        first = int(first_text)
        last = int(last_text) if dash else first
        step = int(step_text) if step_text else 1
    except ValueError:
        raise ConfigError(f"--array wants A-B[:STEP] with whole numbers, got {spec!r}") from None
    if first < 0 or last < first or step < 1:
        raise ConfigError(f"--array {spec!r}: want 0 <= A <= B and STEP >= 1")
    return list(range(first, last + 1, step))


def expand_argv(argv: list[str], item: str) -> list[str]:
    """The command for one item."""
    if any(PLACEHOLDER in arg for arg in argv):
        return [arg.replace(PLACEHOLDER, item) for arg in argv]
    return [*argv, item]


def ids_from_stdin(args: list[str]) -> Iterator[str]:
    """Job ids as given, with `-` standing for one id per line of standard input."""
    for arg in args:
        if arg == "-":
            yield from (line.strip() for line in sys.stdin if line.strip())
        else:
            yield arg

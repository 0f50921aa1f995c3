"""Logging setup: configure_logging is called once, by the CLI. Library code only gets loggers."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

_FIRST = ("ts", "level", "event")
_QUOTED = re.compile(r'[ ="\n]')  # a value holding one of these is escaped and quoted; any other is written as is
_KEYS_KEPT = 4096  # keys checked once each (they are names in the code); a bound in case one is not


class Logfmt:
    """key=value lines, byte for byte what `structlog.processors.LogfmtRenderer(key_order=["ts", "level",
    "event"])` writes, at a fraction of its cost: the broker writes a line per job state change (its audit
    trail), and structlog's renderer checked each character of each key of each line (~2/3 of a line's
    cost). Here a key is checked once, and a value with nothing to escape is written as it is."""

    def __init__(self) -> None:
        self._keys: set[str] = set(_FIRST)

    def __call__(self, _: Any, __: str, event_dict: MutableMapping[str, Any]) -> str:
        first = [(key, event_dict.pop(key, None)) for key in _FIRST]
        return " ".join([self._pair(k, v) for k, v in first] + [self._pair(k, v) for k, v in event_dict.items()])

    def _pair(self, key: str, value: object) -> str:
        if key not in self._keys:
            if any(c <= " " for c in key):
                raise ValueError(f'Invalid key: "{key}"')
            if len(self._keys) < _KEYS_KEPT:
                self._keys.add(key)
        if value is None:
            return f"{key}="
        if value is True:
            return key
        if value is False:
            return f"{key}=false"
        text = value if type(value) is str else str(value)
        if _QUOTED.search(text) is None:
            return f"{key}={text}"
        if " " in text or "=" in text or '"' in text:
            text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            return f'{key}="{text}"'
        return f"{key}={text.replace(chr(10), chr(92) + 'n')}"


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """key=value lines on stderr (console style on a TTY, JSON with fmt='json'); stdout is for output."""
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    elif fmt == "console" or (fmt == "auto" and sys.stderr.isatty()):
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = Logfmt()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )

"""What a machine has and what a job asks for: sizes as people write them, and this machine's defaults.

Rules: memory is an integer number of MiB everywhere inside gridd (`memory_mb`); only people's text
("512M", "1.5G", "2048") is parsed here, and a size that is not one is a ConfigError (a usage error).
Shared by the CLI, the client API and the worker; nothing here touches the network.
"""

from __future__ import annotations

import math
import os
import platform
import re

from gridd.protocol.errors import ConfigError

MAX_JOB_CPUS = 4096
MAX_MEMORY_MB = 2**40

# Compiled on first use (re keeps it): only the flags that take a size read it (start-up of other commands).
_SIZE = r"^\s*(\d+(?:\.\d+)?)\s*([mgt]?)(?:i?b)?\s*$"
_UNIT_MB = {"": 1, "m": 1, "g": 1024, "t": 1024 * 1024}


def parse_size_mb(text: str, flag: str = "--memory") -> int:
    """'512M' -> 512, '2G' -> 2048, '1.5G' -> 1536, '2048' -> 2048 (a plain number is MiB), rounded up."""
    found = re.match(_SIZE, text, re.IGNORECASE)
    if found is None:
        raise ConfigError(f"{flag} wants a size such as 512M, 2G or 1.5G (a plain number is MiB), got {text!r}")
    mb = math.ceil(float(found.group(1)) * _UNIT_MB[found.group(2).lower()])
    if mb > MAX_MEMORY_MB:
        raise ConfigError(f"{flag} {text!r} is more than any machine has")
    return mb


def format_mb(mb: int | None) -> str:
    """A size for people: '512M', '2G', '1.5G'; '-' when unknown or unlimited."""
    if mb is None:
        return "-"
    if mb >= 1024:
        return f"{mb / 1024:.1f}".removesuffix(".0") + "G"
    return f"{mb}M"


def parse_requirement(text: str, flag: str = "--require") -> tuple[str, str]:
    """KEY=VALUE as a (key, value) pair; the key may hold neither '=' nor ';', the value no ';'."""
    key, sep, value = text.partition("=")
    if not sep or not key or ";" in text or any(c.isspace() for c in key) or len(key) > 64 or len(value) > 255:
        raise ConfigError(f"{flag} wants KEY=VALUE (no ';', a key without spaces), got {text!r}")
    return key, value


def machine_tags() -> dict[str, str]:
    """The tags every worker advertises: `os` (linux, darwin, ...) and `arch` (x86_64, arm64, ...)."""
    return {"os": platform.system().lower() or "unknown", "arch": platform.machine() or "unknown"}


def machine_cpus() -> int:
    return os.cpu_count() or 1


def machine_memory_mb() -> int | None:
    """Physical memory in MiB, or None where the platform does not say (then: no limit is announced)."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    if pages <= 0 or page_size <= 0:
        return None
    return min(pages * page_size // (1024 * 1024), MAX_MEMORY_MB)

"""The command line as a configuration layer: the flags a command was given, in the shape of gridd.config.

Rule: None means "not given", so the config file and the environment decide (gridd/config.py); a flag
given badly is a ConfigError (exit 2) naming it.
"""

from __future__ import annotations

import argparse
from typing import Any

from gridd.config import parse_duration, read_secret_file, spelled
from gridd.protocol.errors import ConfigError


def config_layer(args: argparse.Namespace) -> dict[str, Any]:
    """The command line as a config layer (None means: not given)."""
    get = vars(args).get
    tags = dict(_key_value(t, "--tag") for t in get("tag") or [])
    memory: str | None = get("memory")
    insecure = get("insecure") or None
    token = _token_file(get("token_file"))
    return {
        "broker": {
            "listen": get("listen"),
            "advertise": get("advertise"),
            "insecure": insecure if args.command == "broker" else None,
            "data_dir": get("data_dir"),
            "lease_ttl_s": get("lease_ttl"),
            "max_bundle_bytes": get("max_bundle_bytes"),
            "keep_s": _keep(get("keep")),
            "max_command_bytes": get("max_command_bytes"),
            "max_stdin_bytes": get("max_stdin_bytes"),
            "metrics": get("metrics"),
            "store": get("store"),
        },
        "worker": {
            "broker": get("broker"),
            "insecure": insecure,
            "token": token,
            "slots": get("slots"),
            "queues": get("queue") if args.command == "worker" else None,
            "name": get("name"),
            "tags": tags or None,
            "work_dir": get("work_dir"),
            "grace_s": get("grace"),
            "tasks": get("tasks"),
            "when_idle": get("when_idle") or None,
            "max_load": get("max_load"),
            "idle_after_s": get("idle_after"),
            "idle_probe": _command(get("idle_probe"), "--idle-probe"),
            "window": get("window"),
            "on_busy": get("on_busy"),
            "suspend_max_s": get("suspend_max"),
            "resume_after_s": get("resume_after"),
            "probe_every_s": get("probe_every"),
            "cpus": get("cpus") if args.command == "worker" else None,
            "memory_mb": _size_mb(memory) if args.command == "worker" else None,
            "run_as": get("run_as"),
            "run_as_pool": _user_list(get("run_as_pool"), "--run-as-pool"),
        },
        "client": {"broker": get("broker"), "insecure": insecure, "token": token},
    }


def _token_file(given: str | None) -> str | None:
    """--token-file: the credential it holds (refused if others may read it)."""
    if given is None:
        return None
    path = spelled(given)
    try:
        return read_secret_file(path, "token file")
    except FileNotFoundError:
        raise ConfigError(f"token file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read token file {path}: {exc.strerror or exc}") from None


def _size_mb(text: str | None) -> int | None:
    if text is None:
        return None
    from gridd.resources import parse_size_mb  # start-up: a worker's flag (resources imports platform, re)

    return parse_size_mb(text)


def _keep(text: str | None) -> float | None:
    """--keep as seconds; `never` (and 0) as 0, which turns retention off (None here means: not given)."""
    if text is None:
        return None
    seconds = parse_duration(text, "--keep")
    return 0.0 if seconds is None else seconds


def _key_value(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"{flag} wants KEY=VALUE, got {text!r}")
    return key, value


def _user_list(text: str | None, flag: str) -> list[str] | None:
    """USER1,USER2,... as a list (None: not given)."""
    if text is None:
        return None
    users = [u.strip() for u in text.split(",")]
    if not all(users):
        raise ConfigError(f"{flag} wants user names separated by commas, got {text!r}")
    return users


def _command(text: str | None, flag: str) -> list[str] | None:
    """A command line given as one argument, split the way a shell would (without running one)."""
    if text is None:
        return None
    import shlex  # start-up: a worker's flag

    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}") from None
    if not argv:
        raise ConfigError(f"{flag} wants a command")
    return argv

"""Settings: one Struct tree, four layers (defaults < TOML file < environment < flags).

Rule: only load_config reads the environment for settings; components get their section as an argument.
Paths are strings here, spelled as pathlib spells them (`spelled`), and made Paths by the code that uses
them (the broker's and the worker's): pathlib, with urllib.parse and ipaddress, is ~2.5 ms of the start-up
of a command that reads the settings and never a directory's (`gridd status`).

Unlike the rest of gridd, this module does without `from __future__ import annotations`: every command
converts the whole Config, and msgspec resolves string annotations by compiling each one (some 50 here) at
the first conversion, ~0.9 ms of every command's start-up; evaluated where the classes are made (and
kept compiled in the module's bytecode), they cost ~0.2 ms (benchmarks/README.md, *One CLI command*).
"""

import errno
import functools
import os
import re
import socket
import stat
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

from gridd.protocol.errors import ConfigError

DEFAULT_PORT = 7420
# A worker's name names its work directory (DATA_DIR/worker/NAME): one path component, never `.` or `..`.
WORKER_NAME_MAX = 64
_WORKER_NAME = r"[A-Za-z0-9._-]+"  # compiled on first use (re keeps it): start-up of client commands
KEEP_S = 30 * 86400.0  # finished jobs are kept 30 days
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Config sections: field names are the TOML keys; unknown keys are typos and fail loudly."""


class BrokerConfig(Section, frozen=True):
    listen: str = f"127.0.0.1:{DEFAULT_PORT}"
    advertise: list[str] = msgspec.field(default_factory=list)  # more names/IPs for the broker certificate
    insecure: bool = False  # plain TCP: credentials and data in the clear (a trusted network, or tests)
    # The CA goes to the running user's CA store too, so their plain-secret commands trust it (tls.py).
    keep_ca_for_user: bool = True
    data_dir: str | None = None  # None: the default data dir
    lease_ttl_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    retry_delay_s: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    reap_every_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    token: str | None = None
    max_pending_events: Annotated[int, msgspec.Meta(ge=1)] = 100_000  # per event subscriber
    max_bundle_bytes: Annotated[int, msgspec.Meta(ge=1, lt=2**53)] = 4 * 1024**3  # a version's files in all
    # Connections (README "Limits"): strangers together, and from one address, may hold this many.
    max_unauthenticated: Annotated[int, msgspec.Meta(ge=1)] = 256
    max_unauthenticated_per_address: Annotated[int, msgspec.Meta(ge=1)] = 32
    handshake_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    idle_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 300.0  # a client's, with no long poll in flight
    # Limits: a job's argv+env, its --stdin, each stream of an attempt's output. The defaults are those of
    # gridd/protocol/limits.py (which config may not import; tests/broker/test_input_limits.py checks).
    max_command_bytes: Annotated[int, msgspec.Meta(ge=1024, le=8 * 1024 * 1024)] = 256 * 1024
    max_stdin_bytes: Annotated[int, msgspec.Meta(ge=0, le=8 * 1024 * 1024)] = 4 * 1024 * 1024
    max_output_bytes: Annotated[int, msgspec.Meta(ge=0, le=8 * 1024 * 1024)] = 1024 * 1024
    # Retention: finished jobs older than this are removed (None or 0: kept for ever); gridd/broker/store/retention.py.
    keep_s: Annotated[float, msgspec.Meta(ge=0)] | None = KEEP_S
    maintain_every_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0  # retention and idle lanes, this often
    # HOST:PORT of the Prometheus endpoint (gridd/broker/metrics.py; no authentication); None: none served.
    metrics: str | None = None
    # Where the jobs are kept: None, SQLite in the data dir; a postgresql:// URL, that database, which several
    # brokers may share (gridd/broker/store/pg_store.py).
    store: str | None = None


class WorkerConfig(Section, frozen=True):
    broker: str = f"127.0.0.1:{DEFAULT_PORT}"  # or several, "a:7420,b:7420": see parse_addresses
    insecure: bool = False
    name: str | None = None  # None: the host name
    slots: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 1
    queues: list[str] = msgspec.field(default_factory=lambda: ["default"])
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    work_dir: str | None = None  # None: a directory under the default data dir
    grace_s: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    max_output_bytes: Annotated[int, msgspec.Meta(ge=0)] = 1024 * 1024
    token: str | None = None
    tasks: list[str] = msgspec.field(default_factory=list)  # Python modules whose @gridd.task functions it runs
    # Lending the machine (gridd.worker.policy says how each is used).
    when_idle: bool = False
    max_load: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.3
    idle_after_s: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    idle_probe: list[str] = msgspec.field(default_factory=list)  # argv of an admin's probe; implies when_idle
    window: str | None = None  # "HH:MM-HH:MM", local time
    on_busy: Literal["suspend", "vacate"] = "suspend"
    suspend_max_s: Annotated[float, msgspec.Meta(ge=0)] | None = None
    resume_after_s: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    probe_every_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    cpus: Annotated[int, msgspec.Meta(ge=1, le=2**20)] | None = None  # None: max(slots, this machine's cpus)
    memory_mb: Annotated[int, msgspec.Meta(ge=0, le=2**40)] | None = None  # None: this machine's memory
    # Who command jobs run as (gridd.worker.job_users): None runs them as the worker's own user;
    # `gridd worker` started as root makes that "nobody".
    run_as: str | None = None
    run_as_pool: list[str] = msgspec.field(default_factory=list)  # one user per slot

    def __post_init__(self) -> None:
        if self.name is not None:
            check_worker_name(self.name)


class ClientConfig(Section, frozen=True):
    # One address or several, as the worker's; None: the login file's, else the local broker's address
    # file, else 127.0.0.1:7420.
    broker: str | None = None
    token: str | None = None
    insecure: bool = False


class Config(Section, frozen=True):
    broker: BrokerConfig = msgspec.field(default_factory=BrokerConfig)
    worker: WorkerConfig = msgspec.field(default_factory=WorkerConfig)
    client: ClientConfig = msgspec.field(default_factory=ClientConfig)


# Environment variables, explicit and documented: name -> every (section, key) it sets.
ENV: dict[str, list[tuple[str, str]]] = {
    "GRIDD_BROKER": [("client", "broker"), ("worker", "broker")],
    "GRIDD_TOKEN": [("client", "token"), ("worker", "token"), ("broker", "token")],
    "GRIDD_INSECURE": [("client", "insecure"), ("worker", "insecure"), ("broker", "insecure")],
    "GRIDD_STORE": [("broker", "store")],
}


def default_data_dir(environ: Mapping[str, str]) -> str:
    """$XDG_DATA_HOME/gridd, else ~/.local/share/gridd."""
    base = environ.get("XDG_DATA_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".local/share")
    return spelled(os.path.join(base, "gridd"))


def broker_data_dir(config: BrokerConfig, environ: Mapping[str, str]) -> str:
    """The broker's data dir: its `data_dir` setting, else the default one."""
    return default_data_dir(environ) if config.data_dir is None else spelled(config.data_dir)


def default_config_path(environ: Mapping[str, str]) -> str:
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".config")
    return spelled(os.path.join(base, "gridd", "gridd.toml"))


def ca_store_dir(environ: Mapping[str, str]) -> str:
    """Where a user's gridd keeps the CAs of the brokers it trusts: $XDG_CONFIG_HOME/gridd/ca/<digest>.pem."""
    return os.path.join(os.path.dirname(default_config_path(environ)), "ca")


def spelled(path: str) -> str:
    """`path` as str(pathlib.PurePosixPath(path)) spells it, without importing pathlib: no empty or `.`
    components, no trailing slash, `//` kept only as a root of exactly two slashes, "" as ".". Messages
    show paths so, as when these were Paths (tests/test_config.py compares the two)."""
    root = "//" if path.startswith("//") and not path.startswith("///") else "/" if path.startswith("/") else ""
    return root + "/".join(part for part in path.split("/") if part and part != ".") or "."


def load_config(path: str | os.PathLike[str] | None, environ: Mapping[str, str], flags: dict[str, Any]) -> Config:
    """Merge the layers and validate; a bad value raises ConfigError naming where it is."""
    layers = [_read_toml(path, environ), _env_layer(environ), flags]
    merged: dict[str, Any] = functools.reduce(_deep_merge, layers, {})
    try:
        return msgspec.convert(merged, type=Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"bad setting: {exc}") from exc


def read_secret_file(path: str, what: str) -> str:
    """The stripped text of a file that holds a secret (a token file, a credential file). ConfigError if
    anyone but its owner may read or write it, or it is empty; FileNotFoundError if there is none."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    check_private(path, mode)
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read().strip()
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory") from None
    if not text:
        raise ConfigError(f"{what} {path} is empty")
    return text


def check_private(path: str, mode: int) -> None:
    """ConfigError, with the fix, if `mode` lets group or others at a file that holds a secret."""
    if mode & 0o077:
        how = "readable" if mode & 0o044 else "writable"
        raise ConfigError(f"{path} is {how} by others (mode {mode:04o}): chmod 600 {path}")


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 in brackets) as a host and a port; ConfigError if it is not one."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def parse_addresses(text: str) -> list[str]:
    """Brokers to try, in order: one HOST:PORT, or several separated by commas (`a:7420,b:7420`; IPv6 in
    brackets). ConfigError (a usage error: exit 2) naming the first entry that is not HOST:PORT."""
    entries = [entry.strip() for entry in text.split(",")]
    for entry in entries:
        try:
            parse_address(entry)
        except ConfigError:
            where = f" (in {text!r})" if len(entries) > 1 else ""
            raise ConfigError(f"broker address {entry!r}{where} is not HOST:PORT") from None
    return entries


def check_worker_name(name: str, given: str = "--name") -> str:
    """`name` if it is a valid worker name, else ConfigError saying why (a usage error: exit 2)."""
    if len(name) > WORKER_NAME_MAX:
        why = f"is longer than {WORKER_NAME_MAX} characters"
    elif not re.fullmatch(_WORKER_NAME, name):
        why = "may hold only letters, digits, '.', '-' and '_'"
    elif name in (".", ".."):
        why = "may not be '.' or '..'"
    else:
        return name
    raise ConfigError(f"{given} {name[:80]!r} is not a worker name: it {why}")


def parse_duration(text: str, flag: str) -> float | None:
    """'30d', '12h', '90m', '45s' or '3600' as seconds; 'never' as None."""
    value = text.strip().lower()
    if value == "never":
        return None
    number, unit = (value[:-1], value[-1]) if value[-1:] in _DURATION_UNITS else (value, "")
    try:
        seconds = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        raise ConfigError(f"{flag} wants a duration such as 30d, 12h, 90m or 45s (or never), got {text!r}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise ConfigError(f"{flag} must be a duration of 0 or more, got {text!r}")
    return seconds


def host_name() -> str:
    """This machine's name, the default worker name."""
    return socket.gethostname() or "worker"


def _read_toml(given: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> dict[str, Any]:
    explicit = given is not None
    path = default_config_path(environ) if given is None else spelled(os.fspath(given))
    try:
        exists = _exists(path)
    except OSError as exc:  # a directory on the way that this user may not enter
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if not exists:
        if explicit:
            raise ConfigError(f"config file {path} does not exist")
        return {}
    import tomllib  # only when there is a file: the CLI's start-up stays cheap

    try:
        with open(path, "rb") as f:
            layer = tomllib.load(f)
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    if any(isinstance(section, dict) and section.get("token") for section in layer.values()):
        check_private(path, mode)  # it holds a secret
    for section in layer.values():  # `broker = ["a:7420", "b:7420"]` is `broker = "a:7420,b:7420"`
        if isinstance(section, dict) and isinstance(brokers := section.get("broker"), list):
            section["broker"] = ",".join(str(b) for b in brokers)
    return layer


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for name, targets in ENV.items():
        if environ.get(name):
            for section, key in targets:
                layer.setdefault(section, {})[key] = environ[name]
    return layer


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        if value is None:
            continue
        if isinstance(value, dict):
            base = out.get(key)
            out[key] = _deep_merge(base if isinstance(base, dict) else {}, value)
        else:
            out[key] = value
    return out


def _exists(path: str) -> bool:
    """pathlib's Path.exists: False for a path that is not there (or cannot be, a NUL in it), OSError for
    one this user may not look at (a directory on the way it may not enter)."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            return False
        raise
    except ValueError:
        return False
    return True

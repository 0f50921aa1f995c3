"""A throwaway PostgreSQL server for tests and benchmarks, made with Debian's `postgresql` package.

`PgServer` runs `initdb` into a fresh temp dir and `pg_ctl start` on a free 127.0.0.1 port (and a Unix
socket in that dir), waits until the server accepts connections, and stops it by PID afterwards
(`pg_ctl stop -m immediate`, then SIGKILL of the postmaster if it is still alive). Use it as a context
manager so the stop runs in a `finally`.

- initdb and postgres refuse to run as root: as root, they run as the `postgres` system user the Debian
  package creates (or `nobody` where there is none), through `runuser`, and the temp dir belongs to it.
- Authentication is `trust`, and the server listens on 127.0.0.1 and its own socket dir only.
- `fsync` is on by default, as in production; `fsync=False` turns it off (and initdb's sync) for tests where
  durability is not under test. It only matters when the machine itself crashes: a killed postgres or a
  killed broker loses nothing either way, since written data sits in the OS's page cache.
- Locale C, encoding UTF8: text sorts by byte, as SQLite's default (BINARY) collation does, whatever
  locales the machine has.
- A server that cannot start raises `PgServerError` with the tail of its log. It never skips a test: a
  PostgreSQL test that cannot start its server fails.

Only the standard library and the package's own programs are used (`pg_isready`, `psql`), so nothing here
needs a Python driver.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

SUPERUSER = "postgres"  # the role initdb makes (-U), whichever OS user runs the server
INSTALL_HINT = "install Debian's PostgreSQL server: apt-get install postgresql"
LOG_TAIL_LINES = 30
_PORT_TRIES = 3  # a port picked free may be taken before postgres binds it: pick another, this many times


class PgServerError(RuntimeError):
    """The throwaway PostgreSQL server could not be found, started, queried or stopped."""


def find_bin_dir() -> Path:
    """The directory of the server programs: the newest /usr/lib/postgresql/<major>/bin, else initdb's on PATH."""
    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()]
    candidates.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1, reverse=True)
    if candidates:
        return candidates[0]
    on_path = shutil.which("initdb")
    if on_path and (Path(on_path).resolve().parent / "pg_ctl").is_file():
        return Path(on_path).resolve().parent
    raise PgServerError(f"PostgreSQL's initdb/pg_ctl not found in /usr/lib/postgresql/*/bin or on PATH: {INSTALL_HINT}")


def server_user() -> str | None:
    """The OS user the server runs as when we are root (None: ourselves, when we are not)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise PgServerError("running as root, and neither a 'postgres' nor a 'nobody' user exists to run the server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env() -> dict[str, str]:
    """Our environment without libpq's PG* variables, which would redirect the package's programs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


@dataclass(frozen=True)
class _Process:
    """A process by PID and start time, so a PID reused by another process is never taken for it."""

    pid: int
    start_ticks: str

    @classmethod
    def of(cls, pid: int) -> _Process | None:
        fields = _stat_fields(pid)
        return None if fields is None else cls(pid, fields[19])

    def alive(self) -> bool:
        fields = _stat_fields(self.pid)
        # A zombie is dead: its parent (init, after pg_ctl detached it) may not have reaped it yet.
        return fields is not None and fields[19] == self.start_ticks and fields[0] != "Z"

    def uid(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)
        if match is None:
            raise PgServerError(f"no Uid in /proc/{self.pid}/status")
        return int(match.group(1))


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from the state on (the command name, which may hold spaces, cut off), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat[stat.rindex(")") + 2 :].split()


class PgServer:
    """One throwaway cluster: `with PgServer() as pg: pg.psql("SELECT 1")`. See the module's docstring."""

    def __init__(
        self,
        *,
        port: int | None = None,
        fsync: bool = True,
        settings: Mapping[str, str] | None = None,
        start_timeout_s: float = 60.0,
        standby_of: PgServer | None = None,
    ) -> None:
        self.bin_dir = find_bin_dir()
        self.standby_of = standby_of  # a streaming replica of that server, made by pg_basebackup
        self.user = server_user()
        self.fsync = fsync
        self.settings = dict(settings or {})
        self.start_timeout_s = start_timeout_s
        self._fixed_port = port
        self.port = port or 0
        self.root: Path | None = None  # the temp dir: data/, the socket, server.log
        self.process: _Process | None = None

    # -- paths and addresses

    @property
    def data_dir(self) -> Path:
        return self._root() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._root()

    @property
    def log_path(self) -> Path:
        return self._root() / "server.log"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise PgServerError("the server is not running")
        return self.process.pid

    def url(self, dbname: str = "postgres") -> str:
        """A libpq URL to `dbname` over TCP on 127.0.0.1, as the superuser (trust: no password)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def socket_url(self, dbname: str = "postgres") -> str:
        """The same over the Unix socket in the temp dir."""
        return f"postgresql://{SUPERUSER}@/{dbname}?host={self.socket_dir}&port={self.port}"

    def _root(self) -> Path:
        if self.root is None:
            raise PgServerError("the server has not been created (call start())")
        return self.root

    # -- life cycle

    def __enter__(self) -> PgServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """initdb, then start on a free port and wait (bounded) until it accepts connections.

        Raises PgServerError with the server's log tail if it cannot; whatever was started is stopped and
        the temp dir removed first."""
        try:
            self._initdb()
            for attempt in range(1, _PORT_TRIES + 1):
                self.port = self._fixed_port or free_port()
                if self._pg_ctl_start():
                    break
                # Another process took the port we found free: only then is another port worth a try.
                if self._fixed_port or attempt == _PORT_TRIES or not self._port_was_taken():
                    raise PgServerError(
                        f"PostgreSQL did not start on 127.0.0.1:{self.port} ({self.bin_dir}); "
                        f"server log:\n{self.log_tail()}"
                    )
            self.process = self._read_postmaster()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop by PID: `pg_ctl stop -m immediate`, then SIGKILL the postmaster if alive; remove the temp dir."""
        if self.root is None:
            return
        try:
            process = self.process or self._read_postmaster()
            if process is not None and process.alive():
                self._run([self._bin("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate", "-w", "-t", "10"])
                if process.alive():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while process.alive():
                    if time.monotonic() > deadline:
                        raise PgServerError(f"postmaster {process.pid} still alive 10 s after SIGKILL")
                    time.sleep(0.01)  # the kernel's teardown of a killed process: nothing to poll but /proc
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            self.process = None

    # -- queries through psql (no Python driver needed)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL with psql over TCP; the unaligned, tuples-only output. Raises PgServerError on an error."""
        argv = [self._bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.url(dbname), "-c", sql]
        done = subprocess.run(argv, capture_output=True, text=True, env=_clean_env(), timeout=60, check=False)
        if done.returncode != 0:
            raise PgServerError(f"psql failed ({done.returncode}) on {sql!r}: {done.stderr.strip()}")
        return done.stdout.strip()

    def promote(self) -> None:
        """A standby becomes a primary (`pg_ctl promote -w`): it then takes writes."""
        done = self._run([self._bin("pg_ctl"), "promote", "-D", str(self.data_dir), "-w", "-t", "60"])
        if done.returncode != 0:
            raise PgServerError(f"pg_ctl promote failed: {(done.stderr or done.stdout).strip()}\n{self.log_tail()}")

    def kill(self) -> None:
        """The server dies as with a power cut of its machine: SIGKILL of the postmaster (its data dir is kept)."""
        process = self.process or self._read_postmaster()
        if process is not None and process.alive():
            os.kill(process.pid, signal.SIGKILL)
        self.process = None

    def create_database(self, name: str, template: str = "template1") -> None:
        self.psql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, PgServerError):
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:]) or "(server log empty)"

    # -- internals

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _run(self, argv: Sequence[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run one of the server's programs as the server's user, from the temp dir (readable by it)."""
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        try:
            return subprocess.run(
                [*prefix, *argv],
                capture_output=True,
                text=True,
                cwd=self._root(),
                env=_clean_env(),
                timeout=timeout_s,
                check=False,
            )
        except FileNotFoundError as exc:  # runuser is util-linux's, on every Debian; the program was found above
            raise PgServerError(f"cannot run {argv[0]} as {self.user or 'ourselves'}: {exc}") from exc

    def _initdb(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="gridd-pg-"))
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        if self.standby_of is not None:  # a copy of the primary that follows it (-R: standby.signal, its conninfo)
            primary = self.standby_of
            argv = [self._bin("pg_basebackup"), "-D", str(self.data_dir), "-h", "127.0.0.1", "-p", str(primary.port)]
            argv += [
                "-U",
                SUPERUSER,
                "-R",
                "-X",
                "stream",
                "--no-sync",
                "--checkpoint=fast",
            ]  # not a spread one: minutes
        else:
            argv = [self._bin("initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust"]
            argv += ["--encoding=UTF8", "--locale=C"]
            if not self.fsync:
                argv.append("--no-sync")
        done = self._run(argv)
        if done.returncode != 0:
            raise PgServerError(f"{argv[0]} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "on" if self.fsync else "off",
            **self.settings,
        }
        with (self.data_dir / "postgresql.conf").open("a") as f:
            f.write("\n# gridd tests (tests/pgserver.py)\n")
            f.writelines(f"{key} = {value}\n" for key, value in conf.items())

    def _pg_ctl_start(self) -> bool:
        """pg_ctl start -w: it polls the postmaster.pid's status until 'ready' (accepting connections) or the
        postmaster exits, within the deadline -t. True if it became ready."""
        self.log_path.unlink(missing_ok=True)
        timeout = str(max(1, round(self.start_timeout_s)))
        argv = [self._bin("pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_path)]
        argv += ["-o", f"-p {self.port:d}", "-w", "-t", timeout]
        done = self._run(argv, timeout_s=self.start_timeout_s + 10)
        return done.returncode == 0

    def _port_was_taken(self) -> bool:
        return "Address already in use" in self.log_tail()

    def _read_postmaster(self) -> _Process | None:
        """The postmaster from the first line of data/postmaster.pid, or None if there is none."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        except (FileNotFoundError, PgServerError):
            return None
        return _Process.of(int(first)) if first.strip().isdigit() else None

    def _wait_ready(self) -> None:
        """pg_ctl said ready; confirm a client gets in over TCP, polling pg_isready until a deadline."""
        if self.process is None:
            raise PgServerError(f"PostgreSQL started but wrote no postmaster.pid; server log:\n{self.log_tail()}")
        deadline = time.monotonic() + self.start_timeout_s
        argv = [self._bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-t", "5"]
        while True:
            done = subprocess.run(argv, capture_output=True, env=_clean_env(), timeout=30, check=False)
            if done.returncode == 0:
                return
            if not self.process.alive() or time.monotonic() > deadline:
                raise PgServerError(
                    f"PostgreSQL on 127.0.0.1:{self.port} does not accept connections "
                    f"(pg_isready exit {done.returncode}); server log:\n{self.log_tail()}"
                )
            time.sleep(0.05)  # the poll interval: pg_ctl said ready, so this is the rare path

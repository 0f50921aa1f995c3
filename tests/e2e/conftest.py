"""End-to-end helpers: a real `gridd broker`, real `gridd worker`s and the `gridd` CLI, each a subprocess.

Everything talks over 127.0.0.1. HOME and XDG_* point into the test's tmp dir, so nothing touches the real
home. Every wait is a bounded poll with a deadline (tests.polling.wait_until), never a bare sleep. Every process a test
starts is stopped in the fixture's finally: SIGCONT (in case it was stopped), SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from gridd.protocol.credentials import format_credential
from tests.conftest import CA_DIGEST, JOBS_AS_WORKER, seed_ca
from tests.polling import wait_until as wait_until  # the e2e tests once imported it from here: still can

SECRET = "d8CJgvESDy4Ymi73_l3r8kw9XVqG514V"  # the e2e brokers' cluster secret (192 bits)
TOKEN = format_credential(CA_DIGEST, SECRET)  # their brokers are given the test CA before they start
GRIDD = [sys.executable, "-m", "gridd"]
CLI_TIMEOUT_S = 30.0


def clean_env(root: Path, token: str = TOKEN) -> dict[str, str]:
    """The environment of every gridd process: our token, and a home inside the test's tmp dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDD_")}
    env.update(
        GRIDD_TOKEN=token,
        HOME=str(root / "home"),
        XDG_DATA_HOME=str(root / "xdg-data"),
        XDG_CONFIG_HOME=str(root / "xdg-config"),
        PYTHONUNBUFFERED="1",
    )
    return env


def stop_process(proc: subprocess.Popen[Any], term_timeout: float = 5.0) -> None:
    """SIGCONT (it may be stopped), SIGTERM, then SIGKILL if it lingers; always reaped."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
    try:
        proc.wait(timeout=term_timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def stop_all(procs: Sequence[subprocess.Popen[Any]], term_timeout: float = 2.0) -> None:
    """Stop them together: SIGCONT and SIGTERM to each, one shared deadline, then SIGKILL to the rest."""
    live = [p for p in procs if p.poll() is None]
    for proc in live:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
    deadline = time.monotonic() + term_timeout
    for proc in live:
        try:
            proc.wait(timeout=max(0.01, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class Grid:
    """One test's grid: a broker (restartable on the same data dir and port), workers, and the CLI."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = clean_env(root)
        self.data_dir = root / "broker-data"
        self.own_ca = False  # True: the broker makes its own CA (else it is given the test run's, TOKEN names it)
        self._broker: subprocess.Popen[bytes] | None = None
        self.addr: str | None = None
        self.broker_log = root / "broker.log"
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._procs: list[subprocess.Popen[Any]] = []
        self._files: list[Any] = []
        # Jobs that must not outlive the test append `$$` here (each job is its own process group).
        self.job_pids = root / "job-pids"

    # ---- broker ---------------------------------------------------------------------------------------

    @property
    def broker(self) -> subprocess.Popen[bytes]:
        """The `gridd broker` process last started."""
        assert self._broker is not None, "start the broker first"
        return self._broker

    @property
    def port(self) -> int:
        assert self.addr is not None
        return int(self.addr.rpartition(":")[2])

    def broker_argv(self, listen: str = "127.0.0.1:0", flags: Sequence[str] = ()) -> list[str]:
        """`gridd broker` on this grid's data dir, which is given the test CA first (unless `own_ca`)."""
        if not self.own_ca:
            seed_ca(self.data_dir)
        return [*GRIDD, "broker", "--listen", listen, "--data-dir", str(self.data_dir), *flags]

    def run_broker(
        self, listen: str = "127.0.0.1:0", flags: Sequence[str] = (), env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """A `gridd broker` that must stop on its own (refused settings, a taken port...): run to its end."""
        return subprocess.run(
            self.broker_argv(listen, flags), capture_output=True, timeout=30, env=env or self.env, cwd=self.root
        )

    def start_broker(
        self,
        port: int = 0,
        lease_ttl: float | None = None,
        timeout: float = 15.0,
        log_level: str | None = None,
        flags: Sequence[str] = (),
        preexec_fn: Callable[[], None] | None = None,
    ) -> str:
        """Start `gridd broker` on this grid's data dir; returns HOST:PORT once D/broker.addr names it.
        `preexec_fn` runs in the child before gridd does (e.g. to lower its limits)."""
        addr_file = self.data_dir / "broker.addr"
        addr_file.unlink(missing_ok=True)  # a restart must not read the previous broker's address
        more: list[str] = []
        if lease_ttl is not None:
            more += ["--lease-ttl", str(lease_ttl)]
        if log_level is not None:
            more += ["--log-level", log_level]
        proc = self._spawn(self.broker_argv(f"127.0.0.1:{port}", [*more, *flags]), self.broker_log, preexec_fn)
        self._broker = proc

        def bound() -> str | None:
            if proc.poll() is not None:
                raise AssertionError(f"broker exited with {proc.returncode}:\n{self.log_text()}")
            try:
                text = addr_file.read_text().strip()
            except FileNotFoundError:
                return None
            return text or None

        self.addr = wait_until(bound, timeout, "the broker to write broker.addr", every_s=0.05)
        return self.addr

    def log_text(self) -> str:
        return self.broker_log.read_text(errors="replace") if self.broker_log.exists() else ""

    # ---- workers --------------------------------------------------------------------------------------

    def start_worker(
        self,
        name: str,
        slots: int = 1,
        queues: Sequence[str] = (),
        grace: float | None = None,
        flags: Sequence[str] = (),
        work_dir: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """`gridd worker`; unless `flags` say who jobs run as, they run as the worker (JOBS_AS_WORKER)."""
        assert self.addr is not None, "start the broker first"
        argv = [*GRIDD, "worker", "--broker", self.addr, "--slots", str(slots), "--name", name, *flags]
        if not {"--run-as", "--run-as-pool"} & set(flags):
            argv += JOBS_AS_WORKER
        argv += ["--work-dir", str(work_dir or self.root / "work" / name)]
        for queue in queues:
            argv += ["--queue", queue]
        if grace is not None:
            argv += ["--grace", str(grace)]
        proc = self._spawn(argv, self.worker_log(name))
        self.workers[name] = proc
        return proc

    def worker_log(self, name: str) -> Path:
        return self.root / f"worker-{name}.log"

    def wait_worker_connected(self, name: str, timeout: float = 15.0) -> None:
        def connected() -> bool:
            return any(w["name"] == name and w.get("connected", True) for w in self.json("workers"))

        wait_until(connected, timeout, f"worker {name} to connect")

    # ---- the CLI --------------------------------------------------------------------------------------

    def cli(
        self,
        *args: str,
        input: bytes | None = None,
        timeout: float = CLI_TIMEOUT_S,
        broker: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run `gridd ARGS --broker ADDR`; never a traceback on stderr, whatever the exit code."""
        argv = [*GRIDD, *args]
        target = broker or self.addr
        if target is not None and args and args[0] not in ("broker", "worker", "demo"):
            # --broker goes right after the command: submit's COMMAND follows `--`.
            argv = [*GRIDD, args[0], "--broker", target, *args[1:]]
        result = subprocess.run(
            argv,
            input=input if input is not None else b"",
            capture_output=True,
            timeout=timeout,
            env=env or self.env,
            cwd=self.root,
        )
        assert b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
        return result

    def ok(self, *args: str, input: bytes | None = None, timeout: float = CLI_TIMEOUT_S) -> str:
        result = self.cli(*args, input=input, timeout=timeout)
        assert result.returncode == 0, (args, result.returncode, result.stderr.decode(errors="replace"))
        return result.stdout.decode()

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def submit(self, *command: str, flags: Sequence[str] = ()) -> str:
        """`gridd submit FLAGS -- COMMAND`: exactly one line on stdout, the id."""
        out = self.ok("submit", *flags, "--", *command)
        lines = out.splitlines()
        assert len(lines) == 1 and lines[0].strip(), repr(out)
        return lines[0].strip()

    def show(self, job: str) -> dict[str, Any]:
        record = self.json("show", job)
        assert isinstance(record, dict)
        return record

    def wait_state(self, job: str, states: str | Sequence[str], timeout: float = 20.0) -> dict[str, Any]:
        """Poll `gridd show` until the job is in one of `states`; its record (a timeout shows the last one)."""
        wanted = {states} if isinstance(states, str) else set(states)
        return wait_until(
            lambda: self.show(job),
            timeout,
            f"job {job} to be {sorted(wanted)}",
            every_s=0.15,
            holds=lambda record: record["state"] in wanted,
        )

    # ---- processes ------------------------------------------------------------------------------------

    def _spawn(
        self, argv: list[str], log: Path, preexec_fn: Callable[[], None] | None = None
    ) -> subprocess.Popen[bytes]:
        out = log.open("ab")
        self._files.append(out)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=self.env,
            cwd=self.root,
            preexec_fn=preexec_fn,  # only to set limits, before the child runs gridd
        )
        self._procs.append(proc)
        return proc

    def spawn(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Any other process the test needs, stopped with the grid."""
        proc = subprocess.Popen(argv, env=self.env, cwd=self.root, **kwargs)
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        stop_all(self._procs)
        if self.job_pids.exists():  # job process groups that a killed worker left running
            for line in self.job_pids.read_text().split():
                with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                    os.killpg(int(line), signal.SIGKILL)
        for f in self._files:
            f.close()


@pytest.fixture
def grid(tmp_path: Path) -> Iterator[Grid]:
    g = Grid(tmp_path)
    try:
        yield g
    finally:
        g.close()

"""Process plumbing for the benchmarks: a real broker and real workers on 127.0.0.1, in temp dirs.

Everything here is bounded: every wait has a deadline, every process started is stopped (SIGTERM, then
SIGKILL after a grace period) by the context manager that started it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

VENV_BIN = Path(sys.executable).parent
GRIDD = str(VENV_BIN / "gridd")
PYTHON = sys.executable
SECRET = secrets.token_urlsafe(24)  # one random cluster secret per benchmark process


def _bench_ca() -> tuple[bytes, bytes, str]:
    """One CA per benchmark process, given to every broker it starts (brokers of one grid may share a CA),
    so that TOKEN, the credential naming it, serves every broker, worker and client of the run."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from gridd.broker.certificates import key_pem, make_ca
    from gridd.protocol.credentials import ca_digest

    cert, key = make_ca()
    return cert.public_bytes(Encoding.PEM), key_pem(key), ca_digest(cert.public_bytes(Encoding.DER))


CA_PEM, CA_KEY_PEM, CA_DIGEST = _bench_ca()
TOKEN = f"gridd1-{CA_DIGEST}-{SECRET}"
# Clients keep the CAs they trust under XDG_CONFIG_HOME: the benchmarks' own, not the user's.
_CONFIG_HOME = tempfile.mkdtemp(prefix="gridd-bench-config-")
os.environ["XDG_CONFIG_HOME"] = _CONFIG_HOME


@atexit.register
def _remove_config_home() -> None:
    shutil.rmtree(_CONFIG_HOME, ignore_errors=True)


@contextlib.contextmanager
def transport(insecure: bool) -> Iterator[None]:
    """Every broker, worker and client started inside speaks plain TCP (--insecure) if `insecure`, else TLS."""
    before = os.environ.pop("GRIDD_INSECURE", None)
    if insecure:
        os.environ["GRIDD_INSECURE"] = "1"
    try:
        yield
    finally:
        os.environ.pop("GRIDD_INSECURE", None)
        if before is not None:
            os.environ["GRIDD_INSECURE"] = before


def seed_ca(data_dir: Path) -> None:
    tls = data_dir / "tls"
    if (tls / "ca.pem").exists():
        return
    tls.mkdir(mode=0o700, parents=True, exist_ok=True)
    (tls / "ca.pem").write_bytes(CA_PEM)
    fd = os.open(tls / "ca.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(CA_KEY_PEM)


class BenchError(RuntimeError):
    """A scenario could not produce its figure (timeout, failed jobs, missing tool)."""


def bench_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GRIDD_BROKER", None)
    env["GRIDD_TOKEN"] = TOKEN
    env.update(extra)
    return env


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc/PID/status (VmRSS), in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise BenchError(f"no VmRSS for pid {pid}")


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 5.0) -> None:
    """SIGTERM, wait up to grace_s, then SIGKILL. Only ever the process we started."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)


@dataclass
class Broker:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    addr: str
    started_at: float  # perf_counter just before exec
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def start_broker(
    data_dir: Path, *, timeout_s: float = 60.0, log_level: str = "info", store: str | None = None
) -> Broker:
    """`gridd broker --listen 127.0.0.1:0 --data-dir D [--store URL]`; returns once D/broker.addr exists."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    seed_ca(data_dir)
    with contextlib.suppress(FileNotFoundError):
        (data_dir / "broker.addr").unlink()
    log_path = data_dir.parent / f"{data_dir.name}.broker.log"
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it from here
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            *broker_command(),
            *("broker", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), "--log-level", log_level),
            *(("--store", store) if store else ()),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=bench_env(),
    )
    log.close()
    addr_file = data_dir / "broker.addr"
    deadline = t0 + timeout_s
    while True:
        if addr_file.exists():
            text = addr_file.read_text().strip()
            if text:
                return Broker(proc, data_dir, text, t0, log_path)
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] if log_path.exists() else []
            raise BenchError(f"broker exited with {proc.returncode}: {tail[0] if tail else '(no log)'}")
        if time.perf_counter() > deadline:
            stop_process(proc)
            raise BenchError(f"broker did not write {addr_file} within {timeout_s}s")
        time.sleep(0.002)


def broker_command() -> list[str]:
    """How brokers are started: `gridd`, or the command in $GRIDD_BENCH_BROKER (a diagnostic override, e.g.
    `python -m benchmarks.profiled OUT.prof` to profile the broker)."""
    override = os.environ.get("GRIDD_BENCH_BROKER")
    return override.split() if override else [GRIDD]


def worker_command() -> list[str]:
    """How workers are started: `gridd`, or the command in $GRIDD_BENCH_WORKER (a diagnostic override, e.g.
    a wrapper that patches the worker in memory to test a fix; it is recorded in results.jsonl)."""
    override = os.environ.get("GRIDD_BENCH_WORKER")
    return override.split() if override else [GRIDD]


def start_worker(
    addr: str,
    work_root: Path,
    *,
    slots: int = 2,
    name: str = "bench-w1",
    log_level: str = "info",
    extra: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    work_root.mkdir(parents=True, exist_ok=True)
    log = open(work_root.parent / f"{name}.worker.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            *worker_command(),
            "worker",
            "--broker",
            addr,
            "--slots",
            str(slots),
            "--name",
            name,
            "--work-dir",
            str(work_root / name),
            "--log-level",
            log_level,
            # As root, `gridd worker` runs jobs as nobody, who cannot enter this 0700 temp dir: measured
            # here is gridd, so jobs run as the worker, named.
            *(["--run-as", "root"] if os.geteuid() == 0 else []),
            *extra,
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=bench_env(PYTHONPATH=str(Path(__file__).resolve().parent.parent)),
    )
    log.close()
    return proc


@dataclass
class Grid:
    """A broker (and maybe workers) in one temp dir; `with grid(...) as g:` stops them all at the end."""

    root: Path
    broker: Broker
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def addr(self) -> str:
        return self.broker.addr

    def add_worker(
        self, *, slots: int = 2, name: str | None = None, wait: bool = True, extra: Sequence[str] = ()
    ) -> subprocess.Popen[bytes]:
        name = name or f"bench-w{len(self.workers) + 1}"
        proc = start_worker(self.addr, self.root / "work", slots=slots, name=name, extra=extra)
        self.workers.append(proc)
        if wait:
            wait_for_workers(self.addr, len(self.workers), timeout_s=30)
        return proc


@contextlib.contextmanager
def temp_root(prefix: str = "gridd-bench-") -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def grid(*, data_from: Path | None = None, log_level: str = "info", root: Path | None = None) -> Iterator[Grid]:
    """A fresh broker in a temp dir (its database copied from `data_from` if given)."""
    with contextlib.ExitStack() as stack:
        if root is None:
            root = stack.enter_context(temp_root())
        data_dir = root / "broker"
        if data_from is not None:
            shutil.copytree(data_from, data_dir, ignore=shutil.ignore_patterns("broker.addr", ".broker.addr.*"))
        broker = start_broker(data_dir, log_level=log_level)
        g = Grid(root, broker)
        try:
            yield g
        finally:
            for w in g.workers:
                stop_process(w, grace_s=3.0)
            stop_process(broker.proc, grace_s=10.0)


# ---- in-process client helpers ------------------------------------------------------------------------------


def run_async(fn: Any, *args: Any) -> Any:
    return anyio.run(fn, *args)


def wait_for_workers(addr: str, count: int, *, timeout_s: float) -> None:
    from gridd.client import connect

    async def poll() -> None:
        async with connect(addr, TOKEN) as client:
            with anyio.fail_after(timeout_s):
                while (await client.status()).workers < count:  # noqa: ASYNC110 - polling the broker is the point
                    await anyio.sleep(0.02)

    try:
        run_async(poll)
    except TimeoutError as exc:
        raise BenchError(f"{count} worker(s) did not connect within {timeout_s}s") from exc


def status_counts(addr: str) -> dict[str, int]:
    from gridd.client import connect

    async def get() -> dict[str, int]:
        async with connect(addr, TOKEN) as client:
            return dict((await client.status()).counts)

    return run_async(get)  # type: ignore[no-any-return]


def submit_true_jobs(addr: str, count: int, *, batch: int = 1000) -> float:
    """Submit `count` jobs of `true` with submit_many in batches; returns the seconds it took."""
    from gridd.client import connect
    from gridd.protocol.messages import JobSpec

    async def go() -> float:
        async with connect(addr, TOKEN) as client:
            t0 = time.perf_counter()
            left = count
            while left > 0:
                n = min(batch, left)
                await client.submit_many([JobSpec(argv=["true"]) for _ in range(n)])
                left -= n
            return time.perf_counter() - t0

    return run_async(go)  # type: ignore[no-any-return]


def run_timed(
    cmd: str | list[str],
    *,
    timeout_s: float,
    env: dict[str, str] | None = None,
    shell: bool = False,
    cwd: Path | None = None,
    watchdog: Callable[[], str | None] | None = None,
) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    """Wall time of one command in its own process group. The whole group is killed (BenchError) past
    timeout_s, or as soon as `watchdog()`, called about once a second, returns a reason (e.g. a stall)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        shell=shell,
        executable="/bin/bash" if shell else None,
        env=env or bench_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        start_new_session=True,
    )
    shown = cmd if isinstance(cmd, str) else " ".join(cmd)
    deadline = t0 + timeout_s
    while True:
        try:
            out, err = proc.communicate(timeout=min(1.0, max(0.01, deadline - time.perf_counter())))
            break
        except subprocess.TimeoutExpired:
            why = f"timed out after {timeout_s:g}s" if time.perf_counter() >= deadline else (watchdog and watchdog())
            if why:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate(timeout=10)
                raise BenchError(f"{why}: {shown}") from None
    elapsed = time.perf_counter() - t0
    return elapsed, subprocess.CompletedProcess(cmd, proc.returncode, out, err)


class StallWatch:
    """Says "stalled" when the broker's count of finished jobs has not moved for `quiet_s` (a grid that
    stopped making progress would otherwise hold a benchmark until its time limit)."""

    def __init__(self, addr: str, quiet_s: float = 10.0) -> None:
        self.addr = addr
        self.quiet_s = quiet_s
        self.last = -1
        self.since = time.perf_counter()

    def finished(self) -> int:
        counts = status_counts(self.addr)
        return sum(counts.get(k, 0) for k in ("succeeded", "failed", "cancelled"))

    def __call__(self) -> str | None:
        try:
            done = self.finished()
        except Exception:  # noqa: BLE001 - a status that fails is no progress
            done = self.last
        now = time.perf_counter()
        if done != self.last:
            self.last, self.since = done, now
            return None
        if now - self.since >= self.quiet_s:
            return f"stalled: {done} jobs finished and none more for {self.quiet_s:g}s"
        return None

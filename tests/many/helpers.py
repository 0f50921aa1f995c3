"""Helpers for the many-jobs tests: the real `gridd` executable run without blocking the event loop
that serves the in-process broker, and a wrapper script so that shell pipelines can call `gridd`."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from gridd.client import Client
from gridd.protocol.messages import JobView
from tests.conftest import TOKEN, BrokerHandle

GRIDD = [sys.executable, "-m", "gridd"]
CLI_TIMEOUT_S = 60.0


def cli_env(handle: BrokerHandle, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDD_")}
    env.update(
        GRIDD_TOKEN=TOKEN,
        GRIDD_BROKER=handle.addr,
        HOME=str(tmp_path / "home"),
        XDG_DATA_HOME=str(tmp_path / "xdg-data"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
    )
    return env


async def gridd(
    handle: BrokerHandle, tmp_path: Path, *args: str, input: bytes = b"", timeout: float = CLI_TIMEOUT_S
) -> subprocess.CompletedProcess[bytes]:
    """Run `gridd ARGS` as a child process, awaited (the broker in this process keeps serving)."""
    with anyio.fail_after(timeout):
        result = await anyio.run_process(
            [*GRIDD, *args], input=input, check=False, env=cli_env(handle, tmp_path), cwd=tmp_path
        )
    assert b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
    return result


async def gridd_ok(handle: BrokerHandle, tmp_path: Path, *args: str, input: bytes = b"") -> str:
    result = await gridd(handle, tmp_path, *args, input=input)
    assert result.returncode == 0, (args, result.returncode, result.stderr.decode(errors="replace"))
    return result.stdout.decode()


async def gridd_json(handle: BrokerHandle, tmp_path: Path, *args: str) -> Any:
    return json.loads(await gridd_ok(handle, tmp_path, *args, "--json"))


async def shell(
    handle: BrokerHandle, tmp_path: Path, script: str, timeout: float = CLI_TIMEOUT_S
) -> subprocess.CompletedProcess[bytes]:
    """Run a shell pipeline in which `gridd` is the real executable (a wrapper script on PATH)."""
    bin_dir = tmp_path / "bin"
    wrapper = bin_dir / "gridd"
    if not wrapper.exists():
        bin_dir.mkdir(exist_ok=True)
        wrapper.write_text(f'#!/bin/sh\nexec {shlex.join(GRIDD)} "$@"\n')
        wrapper.chmod(0o755)
    env = cli_env(handle, tmp_path)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    with anyio.fail_after(timeout):
        result = await anyio.run_process(["sh", "-c", script], check=False, env=env, cwd=tmp_path)
    assert b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
    return result


def ids_of(stdout: str) -> list[str]:
    """The ids a submission printed: one per line, nothing else."""
    lines = stdout.split("\n")
    assert lines[-1] == "", repr(stdout[-80:])
    ids = lines[:-1]
    assert all(i.isdigit() for i in ids), repr(stdout[:200])
    return ids


# A job that marks its start and end (one O_APPEND write each: lines never interleave), can wait for a
# gate file to appear (bounded: 20 s), can sleep, and fails when its GRIDD_ARRAY_INDEX/GRIDD_ITEM is listed.
JOB_SCRIPT = r"""
import os, sys, time
marks, gate, sleep_s, failing = sys.argv[1], sys.argv[2], float(sys.argv[3]), [f for f in sys.argv[4].split(",") if f]
me = os.environ.get("GRIDD_ARRAY_INDEX") or os.environ.get("GRIDD_ITEM") or ""

def mark(what):
    fd = os.open(marks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{what} {time.time_ns()} {os.environ['GRIDD_JOB_ID']} {me}\n".encode())
    os.close(fd)

mark("start")
if gate != "-":
    for _ in range(2000):
        if os.path.exists(gate):
            break
        time.sleep(0.01)
time.sleep(sleep_s)
mark("end")
sys.exit(1 if me in failing else 0)
"""


def job_command(
    tmp_path: Path, marks: Path, *, gate: Path | None = None, sleep_s: float = 0.0, failing: tuple[str, ...] = ()
) -> list[str]:
    script = tmp_path / "job.py"
    if not script.exists():
        script.write_text(JOB_SCRIPT)
    return [sys.executable, str(script), str(marks), str(gate) if gate else "-", str(sleep_s), ",".join(failing)]


def read_marks(marks: Path) -> list[tuple[str, int, str, str]]:
    """(start|end, time_ns, job id, item) in time order."""
    out = []
    for line in marks.read_text().splitlines() if marks.exists() else []:
        what, ns, job_id, *item = line.split(" ")
        out.append((what, int(ns), job_id, " ".join(item)))
    return sorted(out, key=lambda m: (m[1], m[0] == "start"))


def max_concurrency(marks: list[tuple[str, int, str, str]]) -> int:
    """The most jobs between their start and end marks at one time."""
    running: set[str] = set()
    most = 0
    for what, _, job_id, _ in marks:
        if what == "start":
            running.add(job_id)
            most = max(most, len(running))
        else:
            running.discard(job_id)
    return most


async def wait_all(client: Client, refs: list[str], within_s: float = 30.0) -> list[JobView]:
    """`client.wait(refs)` with a deadline; on timeout, fail saying which states the jobs were stuck in."""
    with anyio.move_on_after(within_s):
        return await client.wait(refs)
    views: list[JobView] = []
    for ref in refs:
        views += await client.jobs(group=ref, limit=0) if ref.startswith("g") else [(await client.show(ref))[0]]
    stuck = Counter(v.state for v in views)
    raise AssertionError(f"jobs not finished after {within_s}s: {dict(stuck)}")


async def group_of(client: Client, job_id: str) -> str:
    """The group a job of a --each/--array submission belongs to."""
    group = (await client.show(job_id))[0].group
    assert group is not None, f"job {job_id} has no group"
    return group

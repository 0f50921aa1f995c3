"""The `cli` scenario (issue 20): what one CLI command costs a person at a shell prompt, start to exit.

Each run starts a broker, then times, interleaved so that a change of the machine's load touches every
command alike: `python -c pass` (the interpreter's floor), `gridd --version` (start-up and the parser),
`gridd submit -- true`, `gridd show ID` and `gridd status` (start-up, connect, TLS, authenticate, one
request, exit), each a fresh process, `cli_runs` times; the figures are medians. It also times a process that
only imports what `gridd submit -- true` imports (the modules are listed by running the command once in a
probe): the import share of a submit is that minus `python -c pass`, the rest (parse, connect, request,
exit) is the submit minus that. Each command's CPU time (user + system, from the children's rusage) is
recorded beside its wall time: on a machine shared with other work it moves less. Last, a submit in phases
(benchmarks/cli_phases.py: the same steps, stamped): interpreter start, imports, parsing, configuration and
credential lookup, connect (TCP, TLS, handshake), the request, and the exit after it.

With $GRIDD_BENCH_BASELINE naming another gridd tree (e.g. /work/main, or an export of an older commit),
its `gridd --version`, `submit`, `show` and `status` are timed in the same rounds (`base_*`), against the
same broker.

gridd's modules are compiled to bytecode first (`compileall`), as an installed copy is: without that, a
process started with PYTHONDONTWRITEBYTECODE=1 compiles every module it imports on every run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.harness import GRIDD, PYTHON, BenchError, bench_env, grid, run_timed
from benchmarks.slow_fsync import baseline_tree

_PROBE = """
import sys
before = set(sys.modules)
from gridd.cli.main import main
code = main(sys.argv[1:])
with open(sys.argv[0], "w") as f:
    f.write("\\n".join(sorted(m for m in sys.modules if m not in before and m != "__main__")))
raise SystemExit(code)
"""


def compile_gridd(*trees: Path) -> None:
    """Bytecode for the gridd the commands import (and the trees named), as `pip install` leaves it."""
    spec = importlib.util.find_spec("gridd")
    if spec is None or not spec.submodule_search_locations:
        raise BenchError("gridd is not importable")
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run(
        [PYTHON, "-m", "compileall", "-q", *spec.submodule_search_locations, *(str(t / "gridd") for t in trees)],
        env=env,
        capture_output=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise BenchError(f"compileall failed: {done.stdout.decode(errors='replace')[-200:]}")


def modules_loaded_by(argv: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    """The modules a `gridd ARGV` process imports beyond what `python -c pass` has (a probe run)."""
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as out:
        done = subprocess.run(
            [PYTHON, "-c", _PROBE.replace("sys.argv[0]", repr(out.name)), *argv],
            env=env,
            cwd=cwd,
            capture_output=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise BenchError(f"probe of gridd {' '.join(argv)} exited {done.returncode}")
        return [m for m in out.read().split() if m]


REPO = Path(__file__).resolve().parent.parent
_GC_OFF = "import gc, importlib, os\ngc.disable()\n"
_EXIT = "os._exit(0)"


def submit_phases(env: dict[str, str], runs: int) -> dict[str, float]:
    """Median milliseconds of each phase of `gridd submit -- true` (benchmarks/cli_phases.py)."""
    phases: dict[str, list[float]] = {}
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(
            [PYTHON, str(REPO / "benchmarks" / "cli_phases.py"), "submit", "--", "true"],
            env=env,
            cwd=REPO,
            capture_output=True,
            timeout=30,
        )
        t1 = time.perf_counter()
        if done.returncode != 0:
            raise BenchError(f"cli_phases exited {done.returncode}: {done.stderr.decode(errors='replace')[-200:]}")
        stamps = json.loads(done.stderr.decode().strip().splitlines()[-1])
        names, times = list(stamps), [t0, *stamps.values(), t1]
        for name, (a, b) in zip(["interpreter", *names[1:], "exit"], zip(times, times[1:], strict=False), strict=True):
            phases.setdefault(name, []).append(b - a)
    return {f"phase_{name}_ms": _ms(values) for name, values in phases.items()}


def _ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def run_cli(runs: int) -> dict[str, float]:
    base = baseline_tree()
    compile_gridd(*([base] if base else []))
    with grid() as g:
        env = bench_env(GRIDD_BROKER=g.addr)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        first = subprocess.run([GRIDD, "submit", "--", "true"], env=env, capture_output=True, timeout=60, cwd=g.root)
        if first.returncode != 0:  # also the warm-up: the first contact keeps the broker's CA
            raise BenchError(f"gridd submit exited {first.returncode}: {first.stderr.decode(errors='replace')[-200:]}")
        job_id = first.stdout.decode().strip()
        imports = modules_loaded_by(["submit", "--", "true"], env, g.root)
        commands = {
            "python_pass": [PYTHON, "-c", "pass"],
            "version": [GRIDD, "--version"],
            "submit": [GRIDD, "submit", "--", "true"],
            "show": [GRIDD, "show", job_id],
            "status": [GRIDD, "status"],
            # As a submit does: the GC off, and no interpreter teardown (gridd/cli/main.py).
            "submit_imports": [PYTHON, "-c", f"{_GC_OFF}for m in {imports!r}: importlib.import_module(m)\n{_EXIT}"],
        }
        if base:
            commands |= {f"base_{name}": commands[name] for name in ("version", "submit", "show", "status")}
        envs = {name: {**env, "PYTHONPATH": str(base)} if name.startswith("base_") else env for name in commands}
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, cmd in commands.items():
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t, done = run_timed(cmd, env=envs[name], timeout_s=30, cwd=g.root)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if done.returncode != 0:
                    tail = done.stderr.decode(errors="replace").strip()[-200:]
                    raise BenchError(f"{name} exited {done.returncode}: {tail}")
                times[name].append(t)
                cpu[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        phases = submit_phases(env, runs)
    out = {f"{name}_ms": _ms(values) for name, values in times.items()}
    out |= {f"{name}_cpu_ms": _ms(values) for name, values in cpu.items() if name != "submit_imports"}
    out["submit_import_share_ms"] = out["submit_imports_ms"] - out["python_pass_ms"]
    out["submit_rest_ms"] = out["submit_ms"] - out["submit_imports_ms"]
    out["submit_modules"] = float(len(imports))
    return out | phases

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

The gridd timed is the one a user has: the tree under test (and the baseline tree) is copied and installed
with `pip install` (not editable: README's way) into a throwaway venv of its own, which compiles it to
bytecode as any install does, and every command of the scenario, `python -c pass` included, runs that venv's
`gridd` or `python`. An editable install (`pip install -e .`, the project's own venv) puts an import hook in
every process, `python -c pass` included, that costs several milliseconds (pathlib and the like) a user's
install does not have. PYTHONPATH is left out of the commands' environment, so that nothing shadows it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.harness import PYTHON, BenchError, bench_env, grid, run_timed, temp_root
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


def install(tree: Path, root: Path) -> Path:
    """`pip install TREE` (a copy of its gridd/, pyproject.toml and README.md) into a new venv under `root`,
    as README tells users to install it; its bin/ directory. pip compiles what it installs to bytecode."""
    src, venv = root / "src", root / "venv"
    for name in ("gridd", "pyproject.toml", "README.md"):
        if (tree / name).is_dir():
            shutil.copytree(tree / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(tree / name, src / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    for cmd in ([PYTHON, "-m", "venv", str(venv)], [str(venv / "bin" / "pip"), "install", "-q", str(src)]):
        done = subprocess.run(cmd, env=env, capture_output=True, timeout=600)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).decode(errors="replace").strip()[-300:]
            raise BenchError(f"installing {tree} failed ({' '.join(cmd[:3])}): {tail}")
    return venv / "bin"


def modules_loaded_by(python: str, argv: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    """The modules a `gridd ARGV` process imports beyond what `python -c pass` has (a probe run)."""
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as out:
        done = subprocess.run(
            [python, "-c", _PROBE.replace("sys.argv[0]", repr(out.name)), *argv],
            env=env,
            cwd=cwd,
            capture_output=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise BenchError(f"probe of gridd {' '.join(argv)} exited {done.returncode}")
        return [m for m in out.read().split() if m]


REPO = Path(__file__).resolve().parent.parent
# As a submit does (gridd/cli/main.py): the GC off, msgspec imported without typing_extensions, no teardown.
_AS_SUBMIT = (
    "import gc, importlib, os, sys\ngc.disable()\n"
    "sys.modules['typing_extensions'] = None\nimport msgspec\ndel sys.modules['typing_extensions']\n"
)
_EXIT = "os._exit(0)"


def submit_phases(python: str, env: dict[str, str], runs: int) -> dict[str, float]:
    """Median milliseconds of each phase of `gridd submit -- true` (benchmarks/cli_phases.py), run by `python`
    (the installed gridd's: the script's own directory, benchmarks/, holds no gridd)."""
    phases: dict[str, list[float]] = {}
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(
            [python, str(REPO / "benchmarks" / "cli_phases.py"), "submit", "--", "true"],
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
    with temp_root("gridd-bench-cli-") as root, grid() as g:
        bin_dir = install(REPO, root / "tree")
        base_bin = install(base, root / "base") if base else None
        gridd, python = str(bin_dir / "gridd"), str(bin_dir / "python")
        env = bench_env(GRIDD_BROKER=g.addr)
        for name in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE"):
            env.pop(name, None)
        first = subprocess.run([gridd, "submit", "--", "true"], env=env, capture_output=True, timeout=60, cwd=g.root)
        if first.returncode != 0:  # also the warm-up: the first contact keeps the broker's CA
            raise BenchError(f"gridd submit exited {first.returncode}: {first.stderr.decode(errors='replace')[-200:]}")
        job_id = first.stdout.decode().strip()
        imports = modules_loaded_by(python, ["submit", "--", "true"], env, g.root)
        argvs = {
            "version": ["--version"],
            "submit": ["submit", "--", "true"],
            "show": ["show", job_id],
            "status": ["status"],
        }
        commands = {
            "python_pass": [python, "-c", "pass"],
            **{name: [gridd, *argv] for name, argv in argvs.items()},
            "submit_imports": [python, "-c", f"{_AS_SUBMIT}for m in {imports!r}: importlib.import_module(m)\n{_EXIT}"],
        }
        if base_bin:
            commands |= {f"base_{name}": [str(base_bin / "gridd"), *argv] for name, argv in argvs.items()}
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, cmd in commands.items():
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t, done = run_timed(cmd, env=env, timeout_s=30, cwd=g.root)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if done.returncode != 0:
                    tail = done.stderr.decode(errors="replace").strip()[-200:]
                    raise BenchError(f"{name} exited {done.returncode}: {tail}")
                times[name].append(t)
                cpu[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        phases = submit_phases(python, env, runs)
    out = {f"{name}_ms": _ms(values) for name, values in times.items()}
    out |= {f"{name}_cpu_ms": _ms(values) for name, values in cpu.items() if name != "submit_imports"}
    out["submit_import_share_ms"] = out["submit_imports_ms"] - out["python_pass_ms"]
    out["submit_rest_ms"] = out["submit_ms"] - out["submit_imports_ms"]
    out["submit_modules"] = float(len(imports))
    return out | phases

"""`python -m benchmarks.setup_peers`: install what the Redis-backed peers need, into this machine and this venv.

The `peers` scenario runs RQ, Celery, dramatiq and arq beside gridd and huey, each against a throwaway
`redis-server` (benchmarks/redis_server.py). None of them is a dependency of gridd or of its test extra:
this is the one place that installs them, and only what is missing:

- Debian's `redis-server` (`apt-get update`, then `apt-get install -y redis-server`) when no `redis-server`
  is on PATH. apt needs root; run this as root (or install the package yourself).
- The Python packages, with `python -m pip install` into the venv of the interpreter running this module
  (the benchmark's own), pinned so that all four resolve together: arq 0.28 needs `redis<6`, while kombu
  5.7 (Celery 5.7's transport) needs `redis>=6.4`; Celery 5.6 with kombu 5.6 accepts redis 5, so the set
  is held there. Without the pins pip backtracks through every kombu ever released and fails.

Exit status 0 when everything is in place (already or now), 1 when an install failed (its output is shown).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

# The requirement set, resolved together (see the docstring for why the pins).
PIP_REQUIREMENTS = [
    "rq>=2",
    "celery[redis]>=5.5,<5.7",
    "kombu[redis]>=5.5,<5.7",
    "dramatiq[redis]>=1.17",
    "arq>=0.26",
    "redis>=5.0.1,<6",
]
# The module each peer is imported as, to tell which are already installed.
PEER_MODULES = {"rq": "rq", "celery": "celery", "dramatiq": "dramatiq", "arq": "arq", "redis": "redis"}
APT_TIMEOUT_S = 600
PIP_TIMEOUT_S = 600


def missing_modules() -> list[str]:
    return [name for name, module in PEER_MODULES.items() if importlib.util.find_spec(module) is None]


def _run(argv: list[str], timeout_s: float) -> bool:
    print("+", " ".join(argv), flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        return subprocess.run(argv, env=env, timeout=timeout_s, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        print(f"timed out after {timeout_s:g}s: {' '.join(argv)}", file=sys.stderr)
        return False


def install_redis_server() -> bool:
    if shutil.which("redis-server") is not None:
        print(f"redis-server: present ({shutil.which('redis-server')})")
        return True
    if os.geteuid() != 0:
        print("redis-server: missing, and apt-get needs root: `apt-get install redis-server` as root", file=sys.stderr)
        return False
    ok = _run(["apt-get", "update", "-q"], APT_TIMEOUT_S) and _run(
        ["apt-get", "install", "-y", "-q", "redis-server"], APT_TIMEOUT_S
    )
    if not ok or shutil.which("redis-server") is None:
        print("redis-server: apt-get could not install Debian's redis-server package", file=sys.stderr)
        return False
    return True


def install_python_packages() -> bool:
    missing = missing_modules()
    if not missing:
        print(f"python packages: present ({', '.join(PEER_MODULES)}) in {sys.prefix}")
        return True
    print(f"python packages: missing {', '.join(missing)}: installing into {sys.prefix}")
    ok = _run([sys.executable, "-m", "pip", "install", *PIP_REQUIREMENTS], PIP_TIMEOUT_S)
    still = missing_modules()
    if not ok or still:
        print(f"python packages: pip could not install {', '.join(still) or 'the set'}", file=sys.stderr)
        return False
    return True


def main() -> int:
    ok = install_redis_server()
    ok = install_python_packages() and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""`python -m benchmarks.setup_peers`: install what the Redis-backed peers need, into this machine and this venv.

The `peers` scenario runs RQ, Celery, dramatiq and arq beside gridd and huey, each against a throwaway
`redis-server` (benchmarks/redis_server.py). None of them is a dependency of gridd or of its test extra:
this is the one place that installs them, and only what is missing:

- Debian's `redis-server` and `parallel` (GNU parallel, which `shell-each` and `huey` time beside xargs),
  each when its command is not on PATH (`apt-get update`, then `apt-get install -y`). apt needs root; run
  this as root (or install the packages yourself).
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


# Debian packages, by the command each provides: the Redis peers' server, and GNU parallel (shell-each and
# the huey scenario time `parallel -j2` beside xargs and gridd).
DEBIAN_PACKAGES = {"redis-server": "redis-server", "parallel": "parallel"}


def install_debian_packages() -> bool:
    """Those of DEBIAN_PACKAGES whose command is not on PATH, with one apt-get update and one install."""
    for command in DEBIAN_PACKAGES:
        if shutil.which(command) is not None:
            print(f"{command}: present ({shutil.which(command)})")
    missing = [package for command, package in DEBIAN_PACKAGES.items() if shutil.which(command) is None]
    if not missing:
        return True
    if os.geteuid() != 0:
        print(
            f"{', '.join(missing)}: missing, and apt-get needs root: `apt-get install {' '.join(missing)}` as root",
            file=sys.stderr,
        )
        return False
    ok = _run(["apt-get", "update", "-q"], APT_TIMEOUT_S) and _run(
        ["apt-get", "install", "-y", "-q", *missing], APT_TIMEOUT_S
    )
    still = [command for command in DEBIAN_PACKAGES if shutil.which(command) is None]
    if not ok or still:
        print(f"{', '.join(still) or 'the packages'}: apt-get could not install them", file=sys.stderr)
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
    ok = install_debian_packages()
    ok = install_python_packages() and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""The `gridd` program's entry (pyproject.toml's script, and `python -m gridd`).

Why not gridd/cli/main.py's `main` itself: its modules are imported here with the cyclic garbage collector
off. Imports make many objects and no garbage, and the collections they set off cost a short command
(`gridd status`) about a millisecond of its start-up. main() turns the collector back on for a command
that runs on (a broker, a worker, a wait).
"""

import gc


def run() -> int:
    gc.disable()
    from gridd.cli.main import main  # imported here, with the collector off: start-up (see above)

    return main()

"""Run `gridd` under cProfile: `python -m benchmarks.profiled OUT.prof ARGS...` runs `gridd ARGS...` and
writes its profile to OUT.prof when it exits (SIGTERM ends a broker or worker cleanly, so the harness's
stop is enough). Meant for $GRIDD_BENCH_BROKER / $GRIDD_BENCH_WORKER, e.g.
`GRIDD_BENCH_BROKER="python -m benchmarks.profiled /tmp/broker.prof" python -m benchmarks tasks --runs 1`;
read it with `python -m pstats /tmp/broker.prof` ("{pid}" in OUT becomes the process id, for
several workers). Times are the CPU of the main thread (the event loop's; not the database
thread's). The profiler costs several times the CPU: read shares of the whole, not absolute times."""

from __future__ import annotations

import cProfile
import os
import sys
import time


def main() -> int:
    out, args = sys.argv[1].replace("{pid}", str(os.getpid())), sys.argv[2:]
    sys.argv = ["gridd", *args]
    from gridd.cli.main import main as gridd_main

    # CPU time of the loop's thread, not wall time: a send that wakes the peer may be preempted for
    # milliseconds on a busy machine, which is not the broker's cost.
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    try:
        code = gridd_main()
    finally:
        profile.disable()
        profile.dump_stats(out)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())

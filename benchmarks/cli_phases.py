"""One `gridd submit|show|status` run in phases, for the `cli` scenario: the same steps as gridd/cli/main.py
and gridd/cli/quick.py take, each stamped with time.perf_counter() (CLOCK_MONOTONIC: the parent's clock too,
so it can add the interpreter's start before the first stamp and the exit after the last).

    python benchmarks/cli_phases.py submit -- true     (GRIDD_BROKER and GRIDD_TOKEN set)

Prints one JSON object on stderr: {phase: perf_counter at its end}, in order; the command's own output on
stdout.
"""

import time

STAMPS = {"start": time.perf_counter()}

import gc  # noqa: E402

gc.disable()  # as gridd/cli/main.py does for a command asked once (there, once the command is known)

import json  # noqa: E402 - after the first stamp, on purpose
import os  # noqa: E402
import sys  # noqa: E402

from gridd.cli import main as cli_main  # noqa: E402

cli_main._import_msgspec_alone()  # as main() does for a one-shot command, before its other imports

from gridd.cli import quick, specs  # noqa: E402, F401 - what the command imports, as main() would
from gridd.cli.flags import config_layer  # noqa: E402
from gridd.client import submits  # noqa: E402, F401
from gridd.client.locate import broker_address, cluster_token  # noqa: E402
from gridd.client.oneshot import open_oneshot  # noqa: E402
from gridd.config import load_config  # noqa: E402
from gridd.protocol.frames import Later  # noqa: E402

STAMPS["import"] = time.perf_counter()


def main() -> int:
    argv = sys.argv[1:]
    args = cli_main.build_parser(cli_main.named_command(argv)).parse_args(argv)
    STAMPS["parse"] = time.perf_counter()
    config = load_config(args.config, os.environ, config_layer(args))
    address = broker_address(config)
    credential = cluster_token(config.client.token)
    STAMPS["config"] = time.perf_counter()
    handler, expected = quick.asked(args.command)
    union = Later(quick.broker_messages)
    with open_oneshot(address, credential, union, insecure=config.client.insecure, expected=expected) as connection:
        STAMPS["connect"] = time.perf_counter()
        code = handler(connection, args)
        STAMPS["request"] = time.perf_counter()
    STAMPS["close"] = time.perf_counter()
    print(json.dumps(STAMPS), file=sys.stderr)
    return code


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # as gridd/cli/main.py's _end_now

"""The commands that ask the broker one thing and exit: `gridd submit` of one job (not waiting), `gridd show`
and `gridd status`, on a blocking connection (client/oneshot.py), with no event loop.

Why: at a shell prompt, or in a loop of single submits, start-up is most of such a command's time: importing
and starting an event loop cost more than its whole conversation with the broker. Their output, errors
and exit codes are those of the async client's commands (commands.py), which serve every other form
(--wait, --each, --array) and a list of several brokers (the async client tries them in turn).

Which commands come here is main.py's `_asked_once`. Rule: each imports only what it needs (`show` and
`status` no submit flags, `submit` no renderer).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from gridd.client.locate import broker_address, cluster_token
from gridd.client.oneshot import OneShot, open_oneshot
from gridd.config import Config
from gridd.protocol.messages import AttemptView, GetStatus, JobView, ShowJob, StatusReported, SubmitJobs


def run(args: argparse.Namespace, config: Config) -> int:
    address = broker_address(config)
    if "," in address:  # several brokers: the async client tries them in turn
        # Imported here, for start-up speed: only a list of brokers needs the async client.
        from gridd.cli import commands

        return commands.run(args, config)
    handler = _COMMANDS[args.command]
    credential = cluster_token(config.client.token)
    expected = ANSWERS[args.command]
    with open_oneshot(address, credential, insecure=config.client.insecure, expected=expected) as connection:
        return handler(connection, args)


def _submit(connection: OneShot, args: argparse.Namespace) -> int:
    # Imported here, for start-up speed: show and status read no submit flags.
    from gridd.cli import specs
    from gridd.client import submits
    from gridd.protocol.errors import PayloadTooLarge
    from gridd.protocol.limits import spec_too_large

    key, ttl_s = specs.key_of(args)
    spec = specs.spec_of(args)
    submits.check_request([spec], key, ttl_s)
    # The broker's limits, as BrokerCalls checks them before a submit (0: not said); the broker checks again.
    welcome = connection.welcome
    problem = spec_too_large(spec, welcome.max_command_bytes or 2**62, welcome.max_stdin_bytes or 2**62)
    if problem is not None:
        raise PayloadTooLarge(f"{problem}; nothing was submitted")
    reply = connection.request(submits.message([spec], args.after, False, None, None, (key, ttl_s, 0)))
    (job_id,) = reply.job_ids
    print(job_id, flush=True)
    return 0


def _show(connection: OneShot, args: argparse.Namespace) -> int:
    reply = connection.request(lambda rid: ShowJob(rid=rid, job_id=args.job))
    print_shown(reply.job, reply.attempts, args)
    return 0


def _status(connection: OneShot, args: argparse.Namespace) -> int:
    print_status(connection.request(lambda rid: GetStatus(rid=rid)), args)
    return 0


def print_shown(job: JobView, attempts: list[AttemptView], args: argparse.Namespace) -> None:
    """`gridd show`'s output (also commands.py's)."""
    from gridd.cli import render  # start-up: submit renders nothing

    print(render.to_json(render.shown_record(job, attempts)) if args.json else render.show(job, attempts))


def print_status(report: StatusReported, args: argparse.Namespace) -> None:
    """`gridd status`'s output (also commands.py's)."""
    from gridd.cli import render  # start-up: submit renders nothing

    if args.json:
        fields: dict[str, object] = {"counts": report.counts, "workers": report.workers, "slots": report.slots}
        fields["running"] = report.running  # the number of running jobs: not a job state
        print(render.to_json(fields))
    else:
        print(render.status(report))


_COMMANDS: dict[str, Callable[[OneShot, argparse.Namespace], int]] = {
    "submit": _submit,
    "show": _show,
    "status": _status,
}

# What answers each command's one request: the connection decodes it without building the decoder of every
# message the broker may send (FrameDecoder's `expected`).
ANSWERS: dict[str, type] = {
    "submit": SubmitJobs.reply_type(),
    "show": ShowJob.reply_type(),
    "status": GetStatus.reply_type(),
}

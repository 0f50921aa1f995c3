"""The commands that ask the broker one thing and exit: `gridd submit` not waiting (one job, or the jobs of
--each or --array, in as many requests as their size needs), `gridd show` and `gridd status`, on a blocking
connection (client/oneshot.py), with no event loop.

Why: at a shell prompt, in a loop of single submits, or at the head of `gridd submit --each - ... | gridd
wait -`, start-up is most of such a command's time: importing and starting an event loop cost more than its
whole conversation with the broker. Their output, errors and exit codes are those of the async client's
commands (commands.py), which serve every other form (--wait) and a list of several brokers (the async
client tries them in turn).

Which commands come here is main.py's `_asked_once`. Rule: each imports only what it needs (`show` and
`status` no submit flags, `submit` no renderer).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from gridd.client.locate import broker_address, cluster_token
from gridd.client.oneshot import OneShot, open_oneshot
from gridd.config import Config
from gridd.protocol.frames import Later
from gridd.protocol.records import AttemptView, JobView

if TYPE_CHECKING:  # an annotation only: `show` and `submit` import no grid message (see asked)
    from gridd.protocol.grid_messages import StatusReported

Handler = Callable[[OneShot, argparse.Namespace], int]


def run(args: argparse.Namespace, config: Config) -> int:
    address = broker_address(config)
    if "," in address:  # several brokers: the async client tries them in turn
        # Imported here, for start-up speed: only a list of brokers needs the async client.
        from gridd.cli import commands

        return commands.run(args, config)
    handler, expected = asked(args.command)
    credential = cluster_token(config.client.token)
    union = Later(broker_messages)
    with open_oneshot(address, credential, union, insecure=config.client.insecure, expected=expected) as connection:
        return handler(connection, args)


def asked(command: str) -> tuple[Handler, type]:
    """What runs `command` on the connection, and the reply its one request expects (the connection decodes
    it without building the decoder of every message the broker may send: FrameDecoder's `expected`)."""
    # Imported here, for start-up speed: each command imports the messages it speaks, and no other.
    if command == "status":
        from gridd.protocol.grid_messages import GetStatus

        return _status, GetStatus.reply_type()
    from gridd.protocol.job_messages import ShowJob, SubmitJobs

    return (_submit, SubmitJobs.reply_type()) if command == "submit" else (_show, ShowJob.reply_type())


def broker_messages() -> object:
    """Every message the broker may send (protocol/messages.py's union), for a frame that is none of those
    a command expects: a message the broker sent unasked, which the connection drops."""
    # Imported here, for start-up speed: it imports every message module (~2 ms), where a command's own
    # request and reply need one or two; a broker that answers as asked sends none other.
    from gridd.protocol.messages import BrokerMessage

    return BrokerMessage


def _submit(connection: OneShot, args: argparse.Namespace) -> int:
    # Imported here, for start-up speed: show and status read no submit flags.
    from gridd.cli import specs
    from gridd.client import submits
    from gridd.protocol.job_messages import SubmitJobs

    many = specs.submitted(args)
    key, ttl_s = specs.key_of(args)
    if not many:
        specs.nothing_to_submit(args)
        return 0
    submits.check_request(many, key, ttl_s)
    welcome = connection.welcome
    submits.check_sizes(many, welcome.max_command_bytes, welcome.max_stdin_bytes)
    # Every chunk's features at once, before the first is sent: a submit the broker is too old for sends nothing.
    connection.refuse_unknown_features(SubmitJobs(rid=0, jobs=many, key=key))
    group = bool(args.each or args.array)
    sending = submits.requests(
        many, after=args.after, new_group=group, max_running=args.max_running, key=key, key_ttl_s=ttl_s
    )
    try:
        request = next(sending)
        while True:
            request = sending.send(connection.request(request))
    except StopIteration as done:
        ids, _ = done.value
    sys.stdout.write("".join(f"{job_id}\n" for job_id in ids))
    sys.stdout.flush()
    return 0


def _show(connection: OneShot, args: argparse.Namespace) -> int:
    from gridd.protocol.job_messages import ShowJob  # start-up: imported by asked already, for show only

    reply = connection.request(lambda rid: ShowJob(rid=rid, job_id=args.job))
    print_shown(reply.job, reply.attempts, args)
    return 0


def _status(connection: OneShot, args: argparse.Namespace) -> int:
    from gridd.protocol.grid_messages import GetStatus  # start-up: imported by asked already, for status only

    print_status(connection.request(lambda rid: GetStatus(rid=rid)), args)
    return 0


def print_shown(job: JobView, attempts: list[AttemptView], args: argparse.Namespace) -> None:
    """`gridd show`'s output (also commands.py's)."""
    from gridd.cli import render  # start-up: submit renders nothing

    print(render.to_json(render.shown_record(job, attempts)) if args.json else render.show(job, attempts))


def print_status(report: StatusReported, args: argparse.Namespace) -> None:
    """`gridd status`'s output (also commands.py's)."""
    from gridd.cli import render_status  # start-up: submit renders nothing, status no job

    print(render_status.to_json(render_status.status_record(report)) if args.json else render_status.status(report))

"""`gridd schedule add|list|show|pause|resume|remove`: periodic jobs kept by the broker. Requests and
output only: the flags are in args_schedule.py; the broker keeps and fires them (gridd/broker/schedules.py).
"""

from __future__ import annotations

import argparse
import shlex
import time

from gridd.cli import args_jobs, render
from gridd.cli.parser import Commands, Parser
from gridd.cli.specs import spec_of
from gridd.client.api import Client
from gridd.cron import local_time
from gridd.printable import printable
from gridd.protocol.errors import ConfigError
from gridd.protocol.messages import ScheduleRun, ScheduleView


async def run(client: Client, args: argparse.Namespace) -> int:
    """Run `gridd schedule ACTION` (`add` reads the submit flags it shares with specs.spec_of)."""
    action = args.schedule_action
    if action == "add":
        if not [a for a in args.argv if a != "--"]:
            raise ConfigError("schedule add needs a command: gridd schedule add NAME --cron EXPR -- COMMAND [ARG...]")
        spec = spec_of(_with_submit_defaults(args))
        view = await client.add_schedule(args.name, args.cron, spec, tz=args.tz, catch_up=args.catch_up)
        print(f"schedule {view.name} added: next run {_next(view)}")
        return 0
    if action == "list":
        views = await client.schedules()
        print(render.to_json(views) if args.json else table(views))
        return 0
    if action == "show":
        view, runs = await client.schedule(args.name)
        print(render.to_json({"schedule": view, "runs": runs}) if args.json else shown(view, runs))
        return 0
    view = await client.change_schedule(args.name, action)
    done = {"pause": "paused", "resume": "resumed", "remove": "removed"}[action]
    print(f"schedule {view.name} {done}" + (f": next run {_next(view)}" if action == "resume" else ""))
    return 0


def _with_submit_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """`add`'s flags over submit's defaults: the submit reader (specs.spec_of) finds every flag it reads,
    those `add` does not take (--stdin, --each, and any submit gains) at submit's default."""
    parser = Parser(prog="gridd")
    args_jobs.add_submit(Commands(parser))
    submit = parser.parse_args(["submit", "--", "true"])
    return argparse.Namespace(**{**vars(submit), **vars(args)})


def table(views: list[ScheduleView]) -> str:
    if not views:
        return "no schedules (gridd schedule add makes one)"
    rows = [["NAME", "CRON", "TZ", "NEXT RUN", "LAST RUN", "STATE", "COMMAND"]]
    for v in views:
        last = "-" if v.last_fired_ms is None else local_time(v.last_fired_ms, v.tz)
        state = "paused" if v.paused else "active"
        rows.append([v.name, v.cron, v.tz, _next(v), last, state, printable(shlex.join(v.argv))[:40]])
    return render.table(rows)


def shown(v: ScheduleView, runs: list[ScheduleRun]) -> str:
    lines = [
        ("name", v.name),
        ("cron", v.cron),
        ("tz", v.tz),
        ("state", "paused" if v.paused else "active"),
        ("next run", _next(v)),
        ("last run", "-" if v.last_fired_ms is None else local_time(v.last_fired_ms, v.tz)),
        ("catch-up", v.catch_up),
        ("command", shlex.join(v.argv)),
        ("queue", v.queue),
        ("owner", v.owner),
        ("created", time.strftime("%Y-%m-%d %H:%M", time.localtime(v.created_ms / 1000))),
    ]
    width = max(len(k) for k, _ in lines)
    text = "\n".join(f"{k:<{width}}  {printable(x)}" for k, x in lines)
    if runs:
        rows = [["SLOT", "JOB", "STATE"]]
        rows += [[local_time(r.slot_ms, v.tz), r.job_id, r.state or "purged"] for r in runs]
        text += "\n\n" + render.table(rows)
    return text


def _next(v: ScheduleView) -> str:
    if v.paused:
        return "- (paused)"
    return "never" if v.next_slot_ms is None else local_time(v.next_slot_ms, v.tz)

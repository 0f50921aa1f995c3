"""`--each` and `--array`: one job per input line or index, `{}` replaced with no shell parsing,
against a real broker and real workers (jobs are real child processes)."""

from __future__ import annotations

import ast
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from gridd.protocol.messages import JobSpec
from tests.conftest import client_of, running_broker, running_worker
from tests.many.helpers import gridd, gridd_json, gridd_ok, group_of, ids_of, wait_all

N_BIG = 10_000


async def test_ten_thousand_jobs_from_one_each_submission_all_run_exactly_once(tmp_path: Path) -> None:
    items = [f"item-{i:05d}" for i in range(N_BIG)]
    items_file = tmp_path / "items.txt"
    items_file.write_text("".join(f"{item}\n" for item in items))
    ran = tmp_path / "ran.txt"
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, slots=4, name="w1"),
        running_worker(tmp_path, b.addr, slots=4, name="w2"),
        client_of(b) as client,
    ):
        started = time.monotonic()
        out = await gridd_ok(
            b,
            tmp_path,
            "submit",
            "--each",
            str(items_file),
            "--",
            "sh",
            "-c",
            f'echo "$GRIDD_ITEM" >> {shlex.quote(str(ran))}',
        )
        ids = ids_of(out)
        assert len(ids) == N_BIG
        assert len(set(ids)) == N_BIG
        group = await group_of(client, ids[0])
        views = await wait_all(client, [group], within_s=150)
        elapsed = time.monotonic() - started
        assert Counter(v.state for v in views) == {"succeeded": N_BIG}
        records = await gridd_json(b, tmp_path, "jobs", "--group", group, "--limit", "0")
    print(f"{N_BIG} jobs submitted and run in {elapsed:.1f}s")
    # Every item ran, and ran once.
    assert Counter(ran.read_text().splitlines()) == Counter(dict.fromkeys(items, 1))
    # The group lists all of them, each succeeded once, and the ids came out in input order.
    assert len(records) == N_BIG
    assert {r["group"] for r in records} == {group}
    assert {r["state"] for r in records} == {"succeeded"}
    assert {r["attempts"] for r in records} == {1}
    item_of = {r["id"]: r["argv"][-1] for r in records}
    assert [item_of[i] for i in ids] == items


def _recorder(log: Path) -> list[str]:
    """A command that appends repr(its arguments) and its GRIDD_ITEM to `log`, one line per job."""
    code = (
        "import sys, os; f = open(sys.argv[1], 'a'); "
        "f.write(repr((sys.argv[2:], os.environ.get('GRIDD_ITEM'), os.environ.get('GRIDD_ARRAY_INDEX'))) + '\\n')"
    )
    return [sys.executable, "-c", code, str(log)]


def _recorded(log: Path) -> list[tuple[list[str], str | None, str | None]]:
    return [ast.literal_eval(line) for line in log.read_text(encoding="utf-8").splitlines()]


HOSTILE_LINES = [
    "plain",
    "two  spaces and\ttab",
    " leading and trailing space ",
    "single ' quote",
    'double " quote',
    "back\\slash \\n not a newline",
    "$HOME and ${PATH} and $(echo no) and `echo no`",
    "semi; pipe | amp & and && or || redirect > /dev/null < x",
    "glob * ? [a-z] ~",
    "-n",
    "--help",
    "-",
    "unicode: héllo wörld — 日本語 🚀",
    "{} braces inside the item {}",
    "#not a comment",
]


async def test_each_line_reaches_the_command_unchanged_wherever_braces_stand(tmp_path: Path) -> None:
    lines = HOSTILE_LINES
    items_file = tmp_path / "items.txt"
    # CRLF and LF line endings mixed, empty lines (and a CRLF-only one) in between, no final newline.
    items_file.write_bytes(("\r\n".join(lines[:5]) + "\n\n\r\n" + "\n".join(lines[5:]) + "\n\n").encode()[:-1])
    cases: dict[str, tuple[list[str], Callable[[str], list[str]]]] = {
        "alone": (["{}"], lambda item: [item]),
        "embedded": (["--in={}.txt"], lambda item: [f"--in={item}.txt"]),
        "twice": (["{}:{}", "x"], lambda item: [f"{item}:{item}", "x"]),
        "appended": (["first", "second"], lambda item: ["first", "second", item]),
    }
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, slots=4),
        client_of(b) as client,
    ):
        groups = {}
        for name, (args, _) in cases.items():
            log = tmp_path / f"{name}.log"
            out = await gridd_ok(b, tmp_path, "submit", "--each", str(items_file), "--", *_recorder(log), *args)
            ids = ids_of(out)
            assert len(ids) == len(lines), (name, out)
            groups[name] = ids
        views = await wait_all(client, [i for ids in groups.values() for i in ids], within_s=20)
        assert {v.state for v in views} == {"succeeded"}
        # The job's own record names the expanded command, in input order.
        for name, (_, expected) in cases.items():
            shown = await client.jobs(group=await group_of(client, groups[name][0]), limit=0)
            argv_of = {v.id: v.argv for v in shown}
            assert [argv_of[i][4:] for i in groups[name]] == [expected(item) for item in lines], name
    for name, (_, expected) in cases.items():
        got = sorted(_recorded(tmp_path / f"{name}.log"), key=lambda r: lines.index(str(r[1])))
        assert got == [(expected(item), item, None) for item in lines], name


async def test_one_worker_runs_every_job_of_several_submissions_in_a_row(tmp_path: Path) -> None:
    # Four --each submissions of 15 short jobs, one after the other, to one worker of 4 slots.
    items = tmp_path / "items.txt"
    items.write_text("".join(f"{i}\n" for i in range(15)))
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, slots=4),
        client_of(b) as client,
    ):
        ids: list[str] = []
        for n in range(4):
            ids += ids_of(
                await gridd_ok(b, tmp_path, "submit", "--each", str(items), "--", *_recorder(tmp_path / f"{n}.log"))
            )
        views = await wait_all(client, ids, within_s=20)
    assert Counter(v.state for v in views) == {"succeeded": 60}


async def test_many_jobs_larger_than_one_submit_frame_join_one_group_in_input_order(tmp_path: Path) -> None:
    # About 6 MiB of specs: the client sends them in more than one chunk (CHUNK_BYTES = 4 MiB).
    padding = "x" * 1000
    specs = [JobSpec(argv=["true", str(i)], env={"PAD": padding}) for i in range(6000)]
    async with running_broker(tmp_path) as b, client_of(b) as client:
        (first,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--", "true"))  # no worker: stays queued
        ids, group = await client.submit_group(specs, after=[first], max_running=2)
        listed = await client.jobs(group=group, limit=0)
    assert len(ids) == 6000
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)
    by_id = {v.id: v for v in listed}
    assert sorted(by_id) == sorted(ids)
    assert [by_id[i].argv[-1] for i in ids] == [str(i) for i in range(6000)]
    assert {v.group for v in listed} == {group}
    assert {v.state for v in listed} == {"waiting"}  # --after applies to every chunk
    assert {tuple(v.after) for v in listed} == {(first,)}


async def test_submit_each_larger_than_one_submit_frame_prints_one_group_in_input_order(tmp_path: Path) -> None:
    # The CLI's own submit (no event loop: cli/quick.py): ~12 MiB of specs (each item in argv and in
    # GRIDD_ITEM), sent in several chunks, the later ones joining the group the first made.
    items = tmp_path / "items.txt"
    items.write_text("".join(f"{i:05d}{'y' * 1000}\n" for i in range(6000)))
    async with running_broker(tmp_path) as b, client_of(b) as client:
        (first,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--", "true"))  # no worker: stays queued
        ids = ids_of(
            await gridd_ok(
                b, tmp_path, "submit", "--each", str(items), "--after", first, "--max-running", "2", "--", "true"
            )
        )
        job, _ = await client.show(ids[0])
        listed = await client.jobs(group=job.group, limit=0)
    assert len(ids) == 6000 and [int(i) for i in ids] == sorted(int(i) for i in ids)
    by_id = {v.id: v for v in listed}
    assert sorted(by_id) == sorted(ids)
    assert [by_id[i].argv[-1][:5] for i in ids] == [f"{i:05d}" for i in range(6000)]
    assert {v.state for v in listed} == {"waiting"}  # --after applies to every chunk
    assert {tuple(v.after) for v in listed} == {(first,)}


async def test_each_from_standard_input_skips_empty_lines_and_strips_crlf(tmp_path: Path) -> None:
    log = tmp_path / "stdin.log"
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, slots=2), client_of(b) as client:
        out = await gridd_ok(
            b, tmp_path, "submit", "--each", "-", "--", *_recorder(log), "{}", input=b"a b\r\n\r\n\nc\\d\r\n'e'"
        )
        ids = ids_of(out)
        assert len(ids) == 3
        views = await wait_all(client, ids, within_s=20)
        assert {v.state for v in views} == {"succeeded"}
    assert sorted(_recorded(log)) == sorted([(["a b"], "a b", None), (["c\\d"], "c\\d", None), (["'e'"], "'e'", None)])


async def test_array_with_a_step_runs_one_job_per_index_with_its_index(tmp_path: Path) -> None:
    log = tmp_path / "array.log"
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, slots=2), client_of(b) as client:
        out = await gridd_ok(b, tmp_path, "submit", "--array", "1-10:3", "--", *_recorder(log), "i={}")
        ids = ids_of(out)
        assert len(ids) == 4
        views = await wait_all(client, ids, within_s=20)
        assert [v.state for v in views] == ["succeeded"] * 4
        assert [v.argv[-1] for v in views] == ["i=1", "i=4", "i=7", "i=10"]
        assert len({v.group for v in views}) == 1 and views[0].group is not None
    assert sorted(_recorded(log), key=lambda r: int(str(r[2]))) == [([f"i={n}"], None, str(n)) for n in (1, 4, 7, 10)]


async def test_array_without_braces_appends_the_index_as_the_last_argument(tmp_path: Path) -> None:
    log = tmp_path / "array.log"
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, slots=2), client_of(b) as client:
        ids = ids_of(await gridd_ok(b, tmp_path, "submit", "--array", "0-2", "--", *_recorder(log), "x"))
        await wait_all(client, ids, within_s=20)
    assert sorted(_recorded(log), key=lambda r: int(str(r[2]))) == [(["x", str(n)], None, str(n)) for n in (0, 1, 2)]


async def test_an_each_file_with_only_empty_lines_submits_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"\n\r\n\n")
    async with running_broker(tmp_path) as b:
        result = await gridd(b, tmp_path, "submit", "--each", str(empty), "--", "true")
        assert result.returncode == 0
        assert result.stdout == b""
        assert len(result.stderr.decode().strip().splitlines()) == 1
        assert await gridd_json(b, tmp_path, "jobs") == []

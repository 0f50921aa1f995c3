"""The many-jobs command line as a user types it: pipelines of `gridd submit --each -` into `gridd wait -`,
group ids wherever a job id is taken, `submit --wait` over a whole submission, and usage errors."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from tests.conftest import client_of, running_broker, running_worker
from tests.many.helpers import gridd, gridd_json, gridd_ok, group_of, ids_of, shell, wait_all


async def test_seq_piped_into_submit_each_piped_into_wait_exits_0(tmp_path: Path) -> None:
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, slots=4),
        client_of(b) as client,
    ):
        result = await shell(b, tmp_path, "seq 50 | gridd submit --each - -- true | gridd wait -")
        assert result.returncode == 0, result.stderr
        assert result.stdout == b""
        listed = await client.jobs(limit=0)
    assert len(listed) == 50
    assert {j.state for j in listed} == {"succeeded"}
    assert sorted(int(j.argv[-1]) for j in listed) == list(range(1, 51))


async def test_wait_dash_exits_1_naming_the_job_that_failed(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, slots=4):
        result = await shell(
            b,
            tmp_path,
            "seq 5 | gridd submit --max-attempts 1 --each - -- sh -c 'test \"$GRIDD_ITEM\" != 3'"
            " | tee ids | gridd wait -",
        )
        ids = ids_of((tmp_path / "ids").read_text())
        assert result.returncode == 1, result.stderr
        lines = result.stderr.decode().strip().splitlines()
        failed = ids[2]
        assert len(lines) == 1 and re.search(rf"\b{failed}\b", lines[0]), lines


async def test_wait_takes_a_group_id(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, slots=4):
        ids = ids_of(await gridd_ok(b, tmp_path, "submit", "--array", "1-6", "--", "true"))
        group = (await gridd_json(b, tmp_path, "show", ids[0]))["group"]
        result = await gridd(b, tmp_path, "wait", group)
        assert result.returncode == 0, result.stderr
        listed = await gridd_json(b, tmp_path, "jobs", "--group", group)
    assert {j["state"] for j in listed} == {"succeeded"}


async def test_cancel_of_a_group_says_how_many_it_cancelled_and_fails_only_if_none(tmp_path: Path) -> None:
    # No worker: the group's jobs stay queued.
    async with running_broker(tmp_path) as b:
        ids = ids_of(await gridd_ok(b, tmp_path, "submit", "--array", "1-5", "--", "true"))
        group = (await gridd_json(b, tmp_path, "show", ids[0]))["group"]
        await gridd_ok(b, tmp_path, "cancel", ids[0])
        first = await gridd(b, tmp_path, "cancel", group)
        again = await gridd(b, tmp_path, "cancel", group)
        states = Counter(j["state"] for j in await gridd_json(b, tmp_path, "jobs", "--group", group))
    assert first.returncode == 0, first.stderr
    (line,) = first.stderr.decode().strip().splitlines()
    assert group in line and re.search(r"\b4\b", line), line
    assert again.returncode == 1
    lines = again.stderr.decode().strip().splitlines()
    assert any(group in x and re.search(r"\b0\b", x) for x in lines), lines
    assert states == {"cancelled": 5}


async def test_cancel_of_a_group_whose_jobs_all_finished_exits_1(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, slots=4), client_of(b) as client:
        ids = ids_of(await gridd_ok(b, tmp_path, "submit", "--array", "1-3", "--", "true"))
        group = await group_of(client, ids[0])
        await wait_all(client, [group], within_s=20)
        result = await gridd(b, tmp_path, "cancel", group)
    assert result.returncode == 1
    assert group in result.stderr.decode()


async def test_hold_and_release_read_ids_from_stdin(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b:
        ids = ids_of(await gridd_ok(b, tmp_path, "submit", "--array", "1-3", "--", "true"))
        (other,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--", "true"))
        stdin = "".join(f"{i}\n" for i in ids).encode()
        await gridd_ok(b, tmp_path, "hold", "-", input=stdin)
        held = {j["id"]: j["state"] for j in await gridd_json(b, tmp_path, "jobs")}
        await gridd_ok(b, tmp_path, "release", "-", input=stdin)
        released = {j["id"]: j["state"] for j in await gridd_json(b, tmp_path, "jobs")}
    assert held == {**dict.fromkeys(ids, "held"), other: "queued"}
    assert released == {**dict.fromkeys(ids, "queued"), other: "queued"}


async def test_retry_of_a_group_retries_only_its_failed_jobs(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, slots=4), client_of(b) as client:
        ids = ids_of(
            await gridd_ok(
                b,
                tmp_path,
                "submit",
                "--max-attempts",
                "1",
                "--array",
                "1-4",
                "--",
                "sh",
                "-c",
                f'test "$GRIDD_ARRAY_INDEX" != 2 || test -e {flag}',
            )
        )
        group = await group_of(client, ids[0])
        views = await wait_all(client, [group], within_s=20)
        assert [v.state for v in views] == ["succeeded", "failed", "succeeded", "succeeded"]
        flag.touch()
        result = await gridd(b, tmp_path, "retry", group)
        assert result.returncode == 0, result.stderr
        assert re.search(r"\b1 of 4\b", result.stderr.decode()), result.stderr
        views = await wait_all(client, [group], within_s=20)
    assert [v.state for v in views] == ["succeeded"] * 4


async def test_submit_each_wait_prints_only_the_ids_and_exits_0_when_all_succeeded(tmp_path: Path) -> None:
    items = tmp_path / "items.txt"
    items.write_text("a\nb\nc\n")
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, slots=4):
        result = await gridd(
            b,
            tmp_path,
            "submit",
            "--each",
            str(items),
            "--wait",
            "--",
            "sh",
            "-c",
            'echo "out $1"; echo "err $1" >&2',
            "sh",
        )
        ids = ids_of(result.stdout.decode())
        listed = await gridd_json(b, tmp_path, "jobs")
    assert result.returncode == 0, result.stderr
    assert len(ids) == 3
    assert b"out" not in result.stdout and b"err" not in result.stderr
    assert {j["state"] for j in listed} == {"succeeded"}


async def test_submit_each_wait_exits_1_with_one_line_counting_the_failures(tmp_path: Path) -> None:
    items = tmp_path / "items.txt"
    items.write_text("ok1\nbad1\nok2\nbad2\nok3\n")
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, slots=4):
        result = await gridd(
            b,
            tmp_path,
            "submit",
            "--max-attempts",
            "1",
            "--each",
            str(items),
            "--wait",
            "--",
            "sh",
            "-c",
            'echo "out $1"; case "$1" in bad*) exit 1;; esac',
            "sh",
        )
    assert result.returncode == 1
    assert len(ids_of(result.stdout.decode())) == 5
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert re.search(r"\b2\b", lines[0]) and re.search(r"\b5\b", lines[0]), lines


async def test_submit_array_wait_exits_0_when_all_succeeded(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr, slots=4):
        result = await gridd(b, tmp_path, "submit", "--array", "1-4", "--max-running", "2", "--wait", "--", "true")
    assert result.returncode == 0, result.stderr
    assert len(ids_of(result.stdout.decode())) == 4


async def test_usage_errors_of_many_jobs_flags_exit_2_with_one_line(tmp_path: Path) -> None:
    items = tmp_path / "items.txt"
    items.write_text("a\n")
    async with running_broker(tmp_path) as b:
        for args in (
            ["--max-running", "2", "--", "true"],
            ["--each", str(items), "--array", "1-3", "--", "true"],
            ["--array", "1-3", "--max-running", "0", "--", "true"],
            ["--array", "3-1", "--", "true"],
            ["--array", "x", "--", "true"],
        ):
            result = await gridd(b, tmp_path, "submit", *args)
            assert result.returncode == 2, (args, result)
            assert result.stdout == b"", args
            assert len(result.stderr.decode().strip().splitlines()) == 1, (args, result.stderr)
        assert await gridd_json(b, tmp_path, "jobs") == []


async def test_an_each_file_that_cannot_be_read_is_one_line_and_nothing_is_submitted(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b:
        result = await gridd(b, tmp_path, "submit", "--each", str(tmp_path / "missing.txt"), "--", "true")
        assert result.returncode != 0
        assert len(result.stderr.decode().strip().splitlines()) == 1
        assert await gridd_json(b, tmp_path, "jobs") == []


async def test_show_json_names_the_group_of_a_group_job_and_null_for_a_plain_one(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b:
        (plain,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--", "true"))
        many = ids_of(await gridd_ok(b, tmp_path, "submit", "--array", "1-2", "--", "true"))
        shown_plain = await gridd_json(b, tmp_path, "show", plain)
        shown_many = [await gridd_json(b, tmp_path, "show", i) for i in many]
    assert shown_plain["group"] is None
    assert shown_many[0]["group"] == shown_many[1]["group"]
    assert re.fullmatch(r"g\d+", shown_many[0]["group"])


async def test_jobs_group_lists_only_that_groups_jobs(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b:
        first = ids_of(await gridd_ok(b, tmp_path, "submit", "--array", "1-3", "--", "true"))
        ids_of(await gridd_ok(b, tmp_path, "submit", "--", "true"))
        second = ids_of(await gridd_ok(b, tmp_path, "submit", "--array", "1-2", "--", "true"))
        group = (await gridd_json(b, tmp_path, "show", first[0]))["group"]
        other = (await gridd_json(b, tmp_path, "show", second[0]))["group"]
        listed = await gridd_json(b, tmp_path, "jobs", "--group", group)
        table = await gridd_ok(b, tmp_path, "jobs", "--group", other)
        unknown = await gridd(b, tmp_path, "jobs", "--group", "g999")
    assert [j["id"] for j in listed] == list(reversed(first))  # most recent first
    assert {j["group"] for j in listed} == {group}
    rows = table.strip().splitlines()[1:]
    assert sorted(r.split()[0] for r in rows) == sorted(second)
    assert unknown.returncode == 1
    assert len(unknown.stderr.decode().strip().splitlines()) == 1


async def test_wait_on_an_unknown_group_or_job_exits_1_with_one_line(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b:
        for ref in ("g999", "99999"):
            result = await gridd(b, tmp_path, "wait", ref)
            assert result.returncode == 1, (ref, result)
            lines = result.stderr.decode().strip().splitlines()
            assert len(lines) == 1 and ref in lines[0], (ref, lines)


async def test_hold_of_a_group_holds_those_of_its_jobs_that_can_be_held(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b:
        ids = ids_of(await gridd_ok(b, tmp_path, "submit", "--array", "1-4", "--", "true"))
        group = (await gridd_json(b, tmp_path, "show", ids[0]))["group"]
        await gridd_ok(b, tmp_path, "cancel", ids[1])
        result = await gridd(b, tmp_path, "hold", group)
        states = {j["id"]: j["state"] for j in await gridd_json(b, tmp_path, "jobs", "--group", group)}
    assert result.returncode == 0, result.stderr
    (line,) = result.stderr.decode().strip().splitlines()
    assert re.search(r"\b3 of 4\b", line) and group in line, line
    assert states == {ids[0]: "held", ids[1]: "cancelled", ids[2]: "held", ids[3]: "held"}

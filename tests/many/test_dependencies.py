"""`--after JOB` (or group): a job waits in state `waiting` until every job it names has succeeded;
a failed or cancelled dependency cancels its dependents (transitively) with a reason naming it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.conftest import client_of, running_broker, running_worker
from tests.many.helpers import gridd, gridd_json, gridd_ok, group_of, ids_of, job_command, read_marks, wait_all


def names(reason: str | None, job_id: str) -> bool:
    """Whether a reason names this job id (as a whole number, not part of another)."""
    return reason is not None and re.search(rf"(?<![0-9]){re.escape(job_id)}(?![0-9])", reason) is not None


async def test_a_reduce_after_a_map_group_runs_after_every_map_and_sees_all_their_outputs(tmp_path: Path) -> None:
    out_dir, gate = tmp_path / "maps", tmp_path / "gate"
    out_dir.mkdir()
    items = tmp_path / "items.txt"
    items.write_text("".join(f"part-{i:02d}\n" for i in range(20)))
    writer = (
        "import os, sys, time\n"
        "for _ in range(2000):\n"
        "    if os.path.exists(sys.argv[2]): break\n"
        "    time.sleep(0.01)\n"
        "open(os.path.join(sys.argv[1], sys.argv[3]), 'w').write(sys.argv[3] + '\\n')\n"
    )
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, slots=4, name="w1"),
        running_worker(tmp_path, b.addr, slots=4, name="w2"),
        client_of(b) as client,
    ):
        maps = ids_of(
            await gridd_ok(
                b,
                tmp_path,
                "submit",
                "--each",
                str(items),
                "--",
                sys.executable,
                "-c",
                writer,
                str(out_dir),
                str(gate),
                "{}",
            )
        )
        group = (await gridd_json(b, tmp_path, "show", maps[0]))["group"]
        assert re.fullmatch(r"g\d+", group)
        (reduce_id,) = ids_of(
            await gridd_ok(b, tmp_path, "submit", "--after", group, "--", "sh", "-c", f"cat {out_dir}/* | wc -l")
        )
        shown = await gridd_json(b, tmp_path, "show", reduce_id)
        assert shown["state"] == "waiting"
        assert shown["reason"] is None
        gate.touch()
        (reduce_view,) = await wait_all(client, [reduce_id], within_s=20)
        map_views = await client.wait(maps)
        assert reduce_view.state == "succeeded"
        assert {v.state for v in map_views} == {"succeeded"}
        assert reduce_view.started_ms is not None
        assert reduce_view.started_ms >= max(v.finished_ms or 0 for v in map_views)
        logs = await gridd_ok(b, tmp_path, "logs", reduce_id)
    assert logs.strip() == "20"


async def test_a_job_after_two_jobs_waits_until_both_have_succeeded(tmp_path: Path) -> None:
    marks, gate_a, gate_b = tmp_path / "marks", tmp_path / "gate-a", tmp_path / "gate-b"
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, slots=4),
        client_of(b) as client,
    ):
        (a,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--", *job_command(tmp_path, marks, gate=gate_a)))
        (c_b,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--", *job_command(tmp_path, marks, gate=gate_b)))
        (c,) = ids_of(
            await gridd_ok(b, tmp_path, "submit", "--after", a, "--after", c_b, "--", *job_command(tmp_path, marks))
        )
        shown = await gridd_json(b, tmp_path, "show", c)
        assert shown["state"] == "waiting"
        assert sorted(shown.get("after", [a, c_b])) == sorted([a, c_b])
        gate_a.touch()
        await wait_all(client, [a], within_s=20)
        assert (await gridd_json(b, tmp_path, "show", c))["state"] == "waiting"
        gate_b.touch()
        views = await wait_all(client, [a, c_b, c], within_s=20)
    assert [v.state for v in views] == ["succeeded"] * 3
    starts = {m[2]: m[1] for m in read_marks(marks) if m[0] == "start"}
    ends = {m[2]: m[1] for m in read_marks(marks) if m[0] == "end"}
    assert starts[c] > max(ends[a], ends[c_b])


async def test_a_failed_dependency_cancels_its_dependents_transitively_naming_it(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, slots=2),
        client_of(b) as client,
    ):
        (a,) = ids_of(
            await gridd_ok(
                b,
                tmp_path,
                "submit",
                "--max-attempts",
                "1",
                "--",
                sys.executable,
                "-c",
                "import os, sys, time\n"
                f"for _ in range(2000):\n    if os.path.exists({str(gate)!r}): break\n    time.sleep(0.01)\n"
                "sys.exit(3)",
            )
        )
        (b_id,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--after", a, "--", "true"))
        (c,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--after", b_id, "--", "true"))
        assert (await gridd_json(b, tmp_path, "show", b_id))["state"] == "waiting"
        assert (await gridd_json(b, tmp_path, "show", c))["state"] == "waiting"
        gate.touch()
        await wait_all(client, [a, b_id, c], within_s=20)
        shown_a = await gridd_json(b, tmp_path, "show", a)
        shown_b = await gridd_json(b, tmp_path, "show", b_id)
        shown_c = await gridd_json(b, tmp_path, "show", c)
        plain_b = await gridd_ok(b, tmp_path, "show", b_id)
    assert (shown_a["state"], shown_a["exit_code"]) == ("failed", 3)
    assert shown_b["state"] == "cancelled"
    assert names(shown_b["reason"], a), shown_b["reason"]
    assert shown_c["state"] == "cancelled"
    assert names(shown_c["reason"], b_id), shown_c["reason"]
    # plain `show` prints why
    reason_lines = [line for line in plain_b.splitlines() if line.startswith("reason")]
    assert len(reason_lines) == 1 and names(reason_lines[0], a), plain_b


async def test_a_dependency_that_already_failed_cancels_the_new_job_at_once(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr), client_of(b) as client:
        (a,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--max-attempts", "1", "--", "false"))
        await wait_all(client, [a], within_s=20)
        result = await gridd(b, tmp_path, "submit", "--after", a, "--", "true")
        assert result.returncode == 0, result.stderr
        (dependent,) = ids_of(result.stdout.decode())
        shown = await gridd_json(b, tmp_path, "show", dependent)
    assert shown["state"] == "cancelled"
    assert names(shown["reason"], a), shown["reason"]
    assert shown["attempts"] == 0


async def test_cancelling_a_queued_dependency_cancels_its_dependents(tmp_path: Path) -> None:
    # No worker: the dependency stays queued until the user cancels it.
    async with running_broker(tmp_path) as b:
        (a,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--", "true"))
        (dep,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--after", a, "--", "true"))
        (dep2,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--after", dep, "--", "true"))
        assert (await gridd_json(b, tmp_path, "show", a))["state"] == "queued"
        assert (await gridd_json(b, tmp_path, "show", dep))["state"] == "waiting"
        await gridd_ok(b, tmp_path, "cancel", a)
        shown = await gridd_json(b, tmp_path, "show", dep)
        shown2 = await gridd_json(b, tmp_path, "show", dep2)
        # Submitted after its dependency was cancelled: cancelled at once, the reason naming it.
        (late,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--after", a, "--", "true"))
        shown_late = await gridd_json(b, tmp_path, "show", late)
    assert shown["state"] == "cancelled" and names(shown["reason"], a), shown
    assert shown2["state"] == "cancelled" and names(shown2["reason"], dep), shown2
    assert shown_late["state"] == "cancelled" and names(shown_late["reason"], a), shown_late


async def test_cancelling_a_waiting_dependency_cancels_its_dependents(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b:
        (a,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--", "true"))
        (waiting,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--after", a, "--", "true"))
        (dependent,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--after", waiting, "--", "true"))
        await gridd_ok(b, tmp_path, "cancel", waiting)
        shown_waiting = await gridd_json(b, tmp_path, "show", waiting)
        shown = await gridd_json(b, tmp_path, "show", dependent)
        shown_a = await gridd_json(b, tmp_path, "show", a)
    assert shown_waiting["state"] == "cancelled"
    assert shown["state"] == "cancelled" and names(shown["reason"], waiting), shown
    assert shown_a["state"] == "queued"  # a dependency is not touched by its dependent's fate


async def test_an_unknown_dependency_is_refused_at_submit_with_one_line(tmp_path: Path) -> None:
    items = tmp_path / "items.txt"
    items.write_text("a\nb\n")
    async with running_broker(tmp_path) as b:
        (known,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--", "true"))
        for after in (["--after", "99999"], ["--after", "g999"], ["--after", known, "--after", "99999"]):
            for many in ([], ["--each", str(items)]):
                result = await gridd(b, tmp_path, "submit", *after, *many, "--", "true")
                assert result.returncode == 1, (after, many, result)
                assert result.stdout == b"", (after, many)
                lines = result.stderr.decode().strip().splitlines()
                assert len(lines) == 1, (after, many, lines)
                assert ("99999" in lines[0]) or ("g999" in lines[0]), lines
        listed = await gridd_json(b, tmp_path, "jobs", "--limit", "0")
    assert [j["id"] for j in listed] == [known]  # nothing else was submitted


async def test_reason_and_group_are_null_for_a_plain_job(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr), client_of(b) as client:
        (job,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--", "true"))
        await wait_all(client, [job], within_s=20)
        shown = await gridd_json(b, tmp_path, "show", job)
    assert shown["state"] == "succeeded"
    assert "reason" in shown and shown["reason"] is None
    assert "group" in shown and shown["group"] is None


async def test_after_with_each_applies_to_every_job_of_the_submission(tmp_path: Path) -> None:
    marks, gate = tmp_path / "marks", tmp_path / "gate"
    items = tmp_path / "items.txt"
    items.write_text("".join(f"x{i}\n" for i in range(5)))
    async with (
        running_broker(tmp_path) as b,
        running_worker(tmp_path, b.addr, slots=4),
        client_of(b) as client,
    ):
        (first,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--", *job_command(tmp_path, marks, gate=gate)))
        many = ids_of(
            await gridd_ok(
                b, tmp_path, "submit", "--after", first, "--each", str(items), "--", *job_command(tmp_path, marks)
            )
        )
        assert len(many) == 5
        group = await group_of(client, many[0])
        listed = await gridd_json(b, tmp_path, "jobs", "--group", group)
        assert sorted(j["id"] for j in listed) == sorted(many)
        assert {j["state"] for j in listed} == {"waiting"}
        gate.touch()
        views = await wait_all(client, [first, *many], within_s=20)
    assert {v.state for v in views} == {"succeeded"}
    seen = read_marks(marks)
    first_end = next(m[1] for m in seen if m[0] == "end" and m[2] == first)
    assert all(m[1] > first_end for m in seen if m[0] == "start" and m[2] in many)


async def test_a_held_waiting_job_released_after_its_dependency_succeeded_runs(tmp_path: Path) -> None:
    marks, gate = tmp_path / "marks", tmp_path / "gate"
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr), client_of(b) as client:
        (a,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--", *job_command(tmp_path, marks, gate=gate)))
        (dep,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--after", a, "--", "true"))
        assert (await gridd_json(b, tmp_path, "show", dep))["state"] == "waiting"
        await gridd_ok(b, tmp_path, "hold", dep)
        assert (await gridd_json(b, tmp_path, "show", dep))["state"] == "held"
        gate.touch()
        await wait_all(client, [a], within_s=20)
        assert (await gridd_json(b, tmp_path, "show", dep))["state"] == "held"
        await gridd_ok(b, tmp_path, "release", dep)
        (view,) = await wait_all(client, [dep], within_s=20)
    assert view.state == "succeeded"


async def test_a_held_job_released_before_its_dependency_succeeded_waits_again(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b:
        (a,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--", "true"))
        (dep,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--after", a, "--", "true"))
        await gridd_ok(b, tmp_path, "hold", dep)
        await gridd_ok(b, tmp_path, "release", dep)
        assert (await gridd_json(b, tmp_path, "show", dep))["state"] == "waiting"


async def test_retrying_a_cancelled_dependent_is_refused_until_its_dependency_succeeds(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr), client_of(b) as client:
        (a,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--max-attempts", "1", "--", "test", "-e", str(flag)))
        (dep,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--after", a, "--", "true"))
        await wait_all(client, [a, dep], within_s=20)
        assert (await gridd_json(b, tmp_path, "show", dep))["state"] == "cancelled"
        refused = await gridd(b, tmp_path, "retry", dep)
        assert refused.returncode == 1
        lines = refused.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and names(lines[0], a), lines
        assert (await gridd_json(b, tmp_path, "show", dep))["state"] == "cancelled"
        flag.touch()
        await gridd_ok(b, tmp_path, "retry", a)
        (view_a,) = await wait_all(client, [a], within_s=20)
        assert view_a.state == "succeeded"
        await gridd_ok(b, tmp_path, "retry", dep)
        (view,) = await wait_all(client, [dep], within_s=20)
        shown = await gridd_json(b, tmp_path, "show", dep)
    assert view.state == "succeeded"
    assert shown["reason"] is None


async def test_a_dependency_that_fails_an_attempt_but_then_succeeds_does_not_cancel_dependents(
    tmp_path: Path,
) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr), client_of(b) as client:
        (a,) = ids_of(
            await gridd_ok(b, tmp_path, "submit", "--max-attempts", "2", "--", "sh", "-c", 'test "$GRIDD_ATTEMPT" = 2')
        )
        (dep,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--after", a, "--", "true"))
        view_a, view_dep = await wait_all(client, [a, dep], within_s=20)
    assert (view_a.state, view_a.attempts) == ("succeeded", 2)
    assert view_dep.state == "succeeded"
    assert view_dep.reason is None


async def test_submit_wait_of_a_job_after_a_failed_dependency_exits_125_saying_why(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, running_worker(tmp_path, b.addr), client_of(b) as client:
        (a,) = ids_of(await gridd_ok(b, tmp_path, "submit", "--max-attempts", "1", "--", "false"))
        await wait_all(client, [a], within_s=20)
        single = await gridd(b, tmp_path, "submit", "--wait", "--after", a, "--", "echo", "never")
        many = await gridd(b, tmp_path, "submit", "--array", "1-3", "--wait", "--after", a, "--", "echo", "never")
    assert single.returncode == 125
    assert single.stdout == b""
    assert names(single.stderr.decode().strip().splitlines()[-1], a), single.stderr
    assert many.returncode == 1
    assert len(ids_of(many.stdout.decode())) == 3
    (line,) = many.stderr.decode().strip().splitlines()
    assert re.search(r"\b3\b", line) and "cancelled" in line, line

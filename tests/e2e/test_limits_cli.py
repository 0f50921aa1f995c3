"""The limits as a person at the CLI meets them: a job too large is refused at submit with one line (exit 1)
and nothing is stored; jobs near the limit never break `gridd jobs` for anyone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gridd.client.sync import connect_sync
from tests.e2e.conftest import TOKEN, Grid

MIB = 1024 * 1024


@pytest.fixture
def g(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    grid = Grid(tmp_path_factory.mktemp("limits"))
    try:
        # 8 MiB a job: three of them would not fit one 16 MiB reply.
        grid.start_broker(flags=["--max-command-bytes", str(8 * MIB), "--keep", "never"])
        yield grid
    finally:
        grid.close()


def test_jobs_lists_every_large_job_for_everyone_and_a_job_past_the_limit_is_refused(g: Grid) -> None:
    with connect_sync(g.addr, TOKEN) as client:
        ids = [client.submit(["echo", "x" * (7 * MIB)]) for _ in range(3)]
    listed = g.json("jobs")
    assert [j["id"] for j in listed] == ids[::-1]
    assert len(g.ok("jobs").splitlines()) == 4  # a header and one line a job
    # Past the limit (read from stdin: the OS caps a command line at a few MiB): one line, exit 1.
    result = g.cli("submit", "--each", "-", "--", "echo", input=b"y" * (9 * MIB) + b"\n")
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    # 18 MiB: the line is in GRIDD_ITEM too.
    assert len(lines) == 1 and "command and environment take 18.0 MiB" in lines[0], lines
    assert "the limit is 8.0 MiB" in lines[0]
    assert [j["id"] for j in g.json("jobs")] == ids[::-1]


def test_purge_removes_finished_jobs_by_hand_and_says_how_many(g: Grid) -> None:
    done = [g.ok("submit", "--queue", "nobody", "--", "true").strip() for _ in range(2)]
    for job_id in done:
        g.ok("cancel", job_id)
    kept = g.ok("submit", "--queue", "nobody", "--", "true").strip()
    # This broker keeps jobs for ever (--keep never): purge needs to be told how old.
    refused = g.cli("purge")
    assert refused.returncode == 1 and len(refused.stderr.decode().strip().splitlines()) == 1
    assert g.cli("purge", "--older-than", "soon").returncode == 2
    assert g.json("purge", "--older-than", "0") == {"purged": 2}
    assert g.ok("purge", "--older-than", "1h").strip() == "removed 0 finished jobs"
    assert [j["id"] for j in g.json("jobs")] == [kept]
    assert g.json("status")["counts"]["cancelled"] == 0
    shown = g.cli("show", done[0])
    assert shown.returncode == 1 and b"no job has id" in shown.stderr

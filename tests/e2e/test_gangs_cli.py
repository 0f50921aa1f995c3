"""Gang jobs as a user runs them: `gridd submit --gang N` on a real broker and real worker processes. A gang
starts only once N workers are free, each member with GRIDD_GANG_SIZE, GRIDD_GANG_RANK and GRIDD_GANG_HOSTS,
while smaller jobs use the free workers meanwhile; `why` says a gang needs more workers than there are; a member
whose worker is killed (kill -9) stops the others and the gang runs again as one attempt; two gangs that together
need more workers than the grid has both finish; `--gang 0` is one line and exit 2."""

from __future__ import annotations

import shlex

from tests.e2e.conftest import Grid
from tests.e2e.test_chaos import _alive, _lines
from tests.polling import wait_until

SAY = 'echo "rank=$GRIDD_GANG_RANK size=$GRIDD_GANG_SIZE hosts=$GRIDD_GANG_HOSTS workers=$GRIDD_GANG_WORKERS"'


def script(grid: Grid, body: str) -> list[str]:
    """`sh -c` that first records its pid (so the grid can kill what a dead worker left behind)."""
    return ["sh", "-c", f"echo $$ >> {shlex.quote(str(grid.job_pids))}; {body}"]


def test_a_gang_waits_for_two_free_workers_while_a_smaller_job_runs_then_starts_both_members(grid: Grid) -> None:
    grid.start_broker()
    grid.start_worker("w1")
    grid.wait_worker_connected("w1")
    gang = grid.submit(*script(grid, SAY), flags=["--gang", "2"])
    small = grid.submit("echo", "small")

    assert grid.wait_state(small, "succeeded")["worker"] == "w1"  # the free worker is not kept idle
    assert grid.show(gang)["state"] == "queued"  # one worker is not enough
    assert grid.show(gang)["gang"] == 2
    why = grid.json("why", gang)
    assert why["reason"] == ("a gang of 2 needs 2 workers that can run it at once; only 1 connected worker can: w1")

    grid.start_worker("w2")
    final = grid.wait_state(gang, ("succeeded", "failed"))
    assert final["state"] == "succeeded", final
    assert final["attempts"] == 1
    hosts = {w["name"]: w["host"] for w in grid.json("workers")}
    lines = grid.ok("logs", gang).splitlines()
    assert len(lines) == 2, lines
    order = lines[0].rpartition("workers=")[2]
    assert sorted(order.split(",")) == ["w1", "w2"]  # one member on each worker
    rank_hosts = ",".join(hosts[w] for w in order.split(","))
    assert lines == [f"rank={r} size=2 hosts={rank_hosts} workers={order}" for r in (0, 1)]


def test_killing_a_members_worker_stops_the_other_member_and_the_gang_runs_again_as_one(grid: Grid) -> None:
    grid.start_broker(lease_ttl=2)
    for name in ("w1", "w2", "w3"):
        grid.start_worker(name)
    marks = grid.root / "marks"
    body = (
        f'echo "$GRIDD_ATTEMPT $GRIDD_GANG_RANK $GRIDD_WORKER $$" >> {marks};'
        f' if [ "$GRIDD_ATTEMPT" = 1 ]; then sleep 60; fi; echo "done $GRIDD_GANG_RANK"'
    )
    gang = grid.submit(*script(grid, body), flags=["--gang", "2", "--max-attempts", "2"])

    first = wait_until(lambda: _lines(marks), 20, "both members to start", holds=lambda ls: len(ls) == 2)
    members = {int(rank): (worker, int(pid)) for _, rank, worker, pid in (line.split() for line in first)}
    killed, survivor = members[1][0], members[0]
    grid.workers[killed].kill()  # rank 1's worker: kill -9 (its member is left running, orphaned)
    grid.workers[killed].wait(timeout=10)

    wait_until(lambda: not _alive(survivor[1]), 20, "the other member to be stopped")
    final = grid.wait_state(gang, ("succeeded", "failed"), timeout=30)
    assert final["state"] == "succeeded", final
    assert final["attempts"] == 2  # the gang's second attempt, not one per member
    (lost, ran) = final["history"]
    assert lost["outcome"] == "lease_expired"
    assert ran["exit_code"] == 0
    second = [line.split() for line in _lines(marks)[2:]]
    assert sorted((attempt, rank) for attempt, rank, _, _ in second) == [("2", "0"), ("2", "1")]
    assert killed not in {worker for _, _, worker, _ in second}
    assert grid.ok("logs", gang) == "done 0\ndone 1\n"


def test_two_gangs_that_together_need_more_workers_than_the_grid_has_both_finish(grid: Grid) -> None:
    grid.start_broker()
    for name in ("w1", "w2", "w3"):
        grid.start_worker(name)
    two = grid.submit(*script(grid, "sleep 0.5; " + SAY), flags=["--gang", "2"])
    three = grid.submit(*script(grid, "sleep 0.5; " + SAY), flags=["--gang", "3"])
    for job in (two, three):
        final = grid.wait_state(job, ("succeeded", "failed"), timeout=40)
        assert (final["state"], final["attempts"]) == ("succeeded", 1), final
    assert len(grid.ok("logs", three).splitlines()) == 3


def test_a_gang_of_zero_or_fewer_is_one_line_and_exit_2_and_nothing_is_submitted(grid: Grid) -> None:
    grid.start_broker()
    for value in ("0", "-2"):
        result = grid.cli("submit", f"--gang={value}", "--", "true")
        assert (result.returncode, result.stdout) == (2, b""), result
        assert result.stderr.decode().splitlines() == [
            f"gridd: --gang must be between 1 and 1024 (workers), got {value}"
        ]
    assert grid.json("jobs") == []

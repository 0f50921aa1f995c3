"""Two brokers on one PostgreSQL under a stream of submits, one of them `kill -9`ed again and again (and once
the other): no acknowledged job is lost, no job gets two outcomes, and every worker of the dead broker is
serving through the other within 5 s (Slurm's backup controller takes over after 120 s by default).

Real processes: brokers A and B (`--store` the test's database, each its own data dir with the test CA, on
fixed ports so a restarted broker comes back where its peers look for it), workers W1 (`--broker A,B`) and
W2 (`--broker B,A`), and a submitter that knows both brokers and reconnects whenever its broker dies. A
connection stays with the broker that answered, so each round kills the broker everyone is on: A (W1 and
the submitter move to B, W2 is there already), then B (everyone moves to A), then A again.
"""

from __future__ import annotations

import collections
import json
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import TOKEN, Grid
from tests.pg_fixtures import PgDatabase
from tests.polling import wait_until

MOVE_WITHIN_S = 5.0  # the bound: kill -9 to every worker serving through the other broker
LEASE_TTL_S = 3
ROUNDS = ("a", "b", "a")  # the broker killed in each round
SUBMITS_PER_ROUND = 20  # acknowledged submits between two kills (the stream goes on throughout)

# Prints each acknowledged id. A submit in flight when its broker dies is not acknowledged (it may or may
# not exist: both are allowed); the submitter reconnects through the list (the next broker answers) and goes
# on. Paced (a rate, not a wait for anything) so that the four slots keep up with the stream.
SUBMITTER = textwrap.dedent(
    """
    import os, sys, anyio
    from gridd.client import connect

    async def main(brokers, token, ran, pids, stop):
        sent = 0
        for _ in range(100):  # connections: one per broker death, and a few failed tries
            try:
                async with connect(brokers, token) as client:
                    while sent < 2000 and not os.path.exists(stop):
                        pause = 2 + sent % 8  # the job sleeps 0.2 to 0.9 s: some run at every kill
                        body = f'echo $$ >> {pids}; echo "$GRIDD_JOB_ID $GRIDD_ATTEMPT" >> {ran}; sleep 0.{pause}'
                        sent += 1
                        job_id = await client.submit(["sh", "-c", body])
                        print(job_id, flush=True)
                        await anyio.sleep(0.2)
                    return
            except Exception as exc:  # its broker died under it (ConnectionLost, or it in a group)
                print("submitter reconnects after:", type(exc).__name__, exc, file=sys.stderr, flush=True)
                await anyio.sleep(0.1)
        sys.exit("submitter: too many reconnections")

    anyio.run(main, *sys.argv[1:])
    """
)

# Each job's record and its finished attempts (`show`), one JSON line per id given on stdin.
HISTORIES = textwrap.dedent(
    """
    import json, sys, anyio
    from gridd.client import connect

    async def main(brokers, token):
        async with connect(brokers, token) as client:
            for job_id in sys.stdin.read().split():
                job, attempts = await client.show(job_id)
                history = [[a.attempt, a.outcome, a.exit_code, a.worker] for a in attempts]
                print(json.dumps({"id": job_id, "state": job.state, "attempts": job.attempts, "history": history}))

    anyio.run(main, *sys.argv[1:])
    """
)


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def _acknowledged(path: Path) -> list[str]:
    """The ids printed whole (a line still being written is not yet acknowledged)."""
    text = path.read_text() if path.exists() else ""
    return text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]


def _all_jobs(grid: Grid, brokers: str) -> list[dict[str, Any]]:
    """`gridd jobs --json --limit 0` through either broker."""
    listed = grid.cli("jobs", "--json", "--limit", "0", broker=brokers)
    assert listed.returncode == 0, listed.stderr.decode(errors="replace")
    jobs = json.loads(listed.stdout)
    assert isinstance(jobs, list)
    return jobs


class Brokers:
    """Brokers A and B on one database: each a Grid of its own (data dir, log, port), both started once on
    port 0 and then always on the port they got."""

    def __init__(self, root: Path, url: str) -> None:
        self.grids = {name: Grid(root / name) for name in ("a", "b")}
        for grid in self.grids.values():
            grid.root.mkdir()
        self.url = url
        self.ports: dict[str, int] = {}

    def start(self, name: str) -> None:
        grid = self.grids[name]
        grid.start_broker(port=self.ports.get(name, 0), lease_ttl=LEASE_TTL_S, flags=["--store", self.url])
        self.ports[name] = grid.port

    def kill(self, name: str) -> float:
        """kill -9; the moment it was sent (time.monotonic)."""
        broker = self.grids[name].broker
        broker.kill()
        killed = time.monotonic()
        broker.wait(timeout=10)
        return killed

    def addr(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def workers(self, name: str) -> dict[str, int]:
        """The workers connected through broker `name` and the jobs each runs (`gridd workers --json` there)."""
        result = self.grids["a"].cli("workers", "--json", broker=self.addr(name), timeout=10)
        if result.returncode != 0:
            return {}
        return {w["name"]: w["running"] for w in json.loads(result.stdout) if w["connected"]}

    def logs(self) -> str:
        return "\n".join(f"--- broker {n}:\n{g.log_text()[-4000:]}" for n, g in self.grids.items())

    def close(self) -> None:
        for grid in self.grids.values():
            grid.close()


def test_brokers_killed_again_and_again_lose_no_acknowledged_job_and_their_workers_move_within_5s(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    brokers = Brokers(tmp_path, pg_database.url)
    grid = brokers.grids["a"]  # workers, the submitter and the CLI are started from A's grid
    try:
        brokers.start("a")
        brokers.start("b")
        a, b = brokers.addr("a"), brokers.addr("b")
        grid.start_worker("W1", slots=2, flags=["--broker", f"{a},{b}"])
        grid.start_worker("W2", slots=2, flags=["--broker", f"{b},{a}"])
        wait_until(lambda: brokers.workers("a"), 20, "W1 to connect to A", holds=lambda w: w.keys() == {"W1"})
        wait_until(lambda: brokers.workers("b"), 20, "W2 to connect to B", holds=lambda w: w.keys() == {"W2"})

        ran, acked, stop = tmp_path / "ran", tmp_path / "acked", tmp_path / "stop"
        quoted = [shlex.quote(str(p)) for p in (ran, grid.job_pids)]
        with acked.open("wb") as out:
            submitter = grid.spawn(
                [sys.executable, "-c", SUBMITTER, f"{a},{b}", TOKEN, *quoted, str(stop)],
                stdout=out,
                stderr=subprocess.PIPE,
            )
        moves: list[tuple[str, float]] = []
        for round_no, victim in enumerate(ROUNDS, 1):
            other = "b" if victim == "a" else "a"
            enough = SUBMITS_PER_ROUND * round_no
            wait_until(lambda: len(_acknowledged(acked)) >= enough, 30, f"{enough} acknowledged submits")  # noqa: B023
            # The victim serves workers that run jobs: a round that killed an idle broker would prove nothing.
            wait_until(
                lambda: brokers.workers(victim),  # noqa: B023
                10,
                f"round {round_no}: a job running on a worker of broker {victim}",
                every_s=0.05,
                holds=lambda workers: sum(workers.values()) > 0,
            )
            killed = brokers.kill(victim)
            try:
                wait_until(
                    lambda: brokers.workers(other),  # noqa: B023
                    MOVE_WITHIN_S,
                    f"round {round_no}: W1 and W2 serving through broker {other} after kill -9 of {victim}",
                    every_s=0.05,
                    holds=lambda workers: workers.keys() == {"W1", "W2"},
                )
            except AssertionError as exc:
                workers = "".join(grid.worker_log(w).read_text()[-3000:] for w in ("W1", "W2"))
                raise AssertionError(f"{exc}\n{brokers.logs()}\n--- workers:\n{workers}") from None
            moved_s = time.monotonic() - killed  # the last look may have ended past the deadline: measured too
            assert moved_s < MOVE_WITHIN_S, f"round {round_no}: the workers took {moved_s:.2f}s to move"
            moves.append((victim, moved_s))
            brokers.start(victim)  # back on its port; nobody moves back to it (they stay where they are)

        stop.touch()
        _, err = submitter.communicate(timeout=20)
        assert submitter.returncode == 0, err.decode(errors="replace")
        acknowledged = _acknowledged(acked)
        assert len(set(acknowledged)) == len(acknowledged) >= SUBMITS_PER_ROUND * len(ROUNDS)
        assert err.decode().count("submitter reconnects after") >= 1, "the submitter's broker never died"

        # Every job the grid holds: the acknowledged ones, and any submit cut off in flight that committed.
        both = f"{a},{b}"
        ids = [j["id"] for j in _all_jobs(grid, both)]
        waited = grid.cli("wait", *ids, broker=both, timeout=40)
        assert waited.returncode == 0, (waited.stderr.decode(errors="replace"), brokers.logs())
        states = {j["id"]: j for j in _all_jobs(grid, both)}
        missing = [i for i in acknowledged if i not in states]
        assert not missing, f"acknowledged but lost: {missing}"
        not_ok = {i: j["state"] for i, j in states.items() if j["state"] != "succeeded"}
        assert not not_ok, not_ok

        shown = subprocess.run(
            [sys.executable, "-c", HISTORIES, both, TOKEN],
            input="\n".join(states).encode(),
            capture_output=True,
            timeout=30,
            env=grid.env,
            check=True,
        )
        histories = {h["id"]: h for h in map(json.loads, shown.stdout.decode().splitlines())}
        assert set(histories) == set(states)
        runs: dict[str, list[int]] = collections.defaultdict(list)
        for line in _lines(ran):
            job_id, attempt = line.split()
            runs[job_id].append(int(attempt))
        for job_id, h in histories.items():
            # A job's outcome is one completed run (`exited`, code 0: these jobs only sleep); other entries
            # of its history are attempts the broker ended (their lease expired) before it ran again.
            completed = [entry for entry in h["history"] if entry[1] == "exited"]
            assert [entry[2] for entry in completed] == [0], f"job {job_id} has not exactly one outcome: {h}"
            assert h["history"][-1] == completed[0] and len(h["history"]) == h["attempts"], h
            # Ran twice only if an attempt was lost and retried: then its history says so, one entry each.
            assert len(runs[job_id]) == len(set(runs[job_id])), f"an attempt of job {job_id} ran twice: {h}"
            recorded = {entry[0] for entry in h["history"]}
            assert set(runs[job_id]) <= recorded, f"job {job_id} ran attempts {runs[job_id]}, recorded: {h}"
            assert runs[job_id], f"job {job_id} succeeded without running: {h}"
        retried = {i: h["history"] for i, h in histories.items() if len(h["history"]) > 1}
        print(f"\nmoves (broker killed, s to both workers on the other): {[(v, round(s, 2)) for v, s in moves]}")
        print(f"jobs: {len(states)}, acknowledged: {len(acknowledged)}, retried: {retried}")
    finally:
        brokers.close()

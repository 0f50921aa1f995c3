"""`gridd token` from the command line, and each role's credential used the way a person would: as
GRIDD_TOKEN, with whatever `gridd token create` printed (its format is the broker's business)."""

from __future__ import annotations

import json

from tests.e2e.conftest import Grid
from tests.polling import wait_until


def _as(grid: Grid, credential: str) -> dict[str, str]:
    return {**grid.env, "GRIDD_TOKEN": credential}


def _create(grid: Grid, *args: str) -> str:
    out = grid.ok("token", "create", *args)
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].strip(), repr(out)  # one credential line, nothing else
    return lines[0].strip()


def test_tokens_per_role_from_the_command_line(grid: Grid) -> None:
    grid.start_broker()
    ci = _create(grid, "--role", "submit", "--name", "ci", "--queues", "build", "--expires", "30d")
    reader = _create(grid, "--role", "read", "--name", "watcher")
    worker = _create(grid, "--role", "worker", "--name", "w9", "--queues", "build")

    theirs = grid.submit("sleep", "60", flags=["--queue", "other"])  # the cluster token: owner admin
    as_ci = grid.cli("submit", "--queue", "build", "--", "echo", "from-ci", env=_as(grid, ci))
    assert as_ci.returncode == 0, as_ci.stderr
    mine = as_ci.stdout.decode().strip()

    # A refused request: exit 1, one line naming the token, its role and what it may not do.
    refused = grid.cli("cancel", theirs, env=_as(grid, ci))
    assert refused.returncode == 1
    assert refused.stderr.decode().splitlines() == [
        f"gridd: token 'ci' (role submit) may not cancel job {theirs}: it belongs to 'admin'"
    ]
    refused = grid.cli("token", "list", env=_as(grid, ci))
    assert (refused.returncode, refused.stderr.decode()) == (1, "gridd: token 'ci' (role submit) may not list tokens\n")
    refused = grid.cli("logs", mine, env=_as(grid, reader))
    assert refused.returncode == 1 and "(role read) may not read the output of jobs" in refused.stderr.decode()

    # Owners: show, jobs (OWNER column), --json; a submit token lists its own jobs only.
    assert grid.show(mine)["owner"] == "ci" and grid.show(theirs)["owner"] == "admin"
    table = grid.ok("jobs").splitlines()
    assert table[0].split()[:4] == ["ID", "STATE", "QUEUE", "OWNER"]
    assert "owner" in grid.ok("show", mine) and "ci" in grid.ok("show", mine)
    own = grid.cli("jobs", "--json", env=_as(grid, ci))
    assert own.returncode == 0 and [j["id"] for j in json.loads(own.stdout)] == [mine]

    # A worker token runs jobs as its own name, from its own queues; the job's owner reads its output.
    saved, grid.env = grid.env, _as(grid, worker)
    try:
        grid.start_worker("w9", queues=["build"])
    finally:
        grid.env = saved
    assert grid.wait_state(mine, "succeeded")["worker"] == "w9"
    logs = grid.cli("logs", mine, env=_as(grid, ci))
    assert (logs.returncode, logs.stdout) == (0, b"from-ci\n")

    # The list: names, roles, queues, last use; never a secret.
    listed = {t["name"]: t for t in grid.json("token", "list")}
    assert set(listed) == {"ci", "watcher", "w9"}
    assert listed["ci"]["queues"] == ["build"] and listed["ci"]["last_used_ms"] is not None
    assert listed["ci"]["expires_ms"] is not None and listed["watcher"]["expires_ms"] is None
    text = grid.ok("token", "list")
    assert text.splitlines()[0].split()[:3] == ["NAME", "ROLE", "QUEUES"]
    for credential in (ci, reader, worker):
        assert credential not in text and credential[-20:] not in str(listed)

    # Revoked: refused from then on (exit 3: cannot authenticate).
    assert "revoked token 'ci'" in grid.ok("token", "revoke", "ci")
    gone = grid.cli("status", env=_as(grid, ci))
    assert gone.returncode == 3 and gone.stderr.decode().count("\n") == 1
    wait_until(lambda: grid.json("token", "list")[0]["revoked_ms"], 5, "the revocation to show")

"""`gridd why` against a real broker and real workers: a job that does not run says the one reason first, its
own causes (held, dependencies, its group's --max-running, a retry delay) and each connected worker's first
obstacle (queue, credential, tag, slots and the jobs in them, owner-busy, draining); a running or finished job
says where, and its attempts; an unknown id is refused."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gridd.client import Client
from gridd.client.connection import open_connection
from gridd.protocol.errors import Forbidden, UnknownJob
from gridd.protocol.messages import JobExplained, JobSpec, RegisterWorker
from tests.broker.test_resources import hold, started, state_of, submit_one
from tests.conftest import TOKEN, client_of, running_broker, running_worker
from tests.polling import eventually


def fits(e: JobExplained) -> dict[str, str | None]:
    return {w.worker: w.blocker for w in e.workers}


async def test_a_held_job_says_held_and_how_to_release_it(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        job = await client.submit(["true"], queue="nowhere")
        await client.hold(job)
        e = await client.why(job)
        assert e.reason == "held: it does not start until released"
        assert e.remedy == f"gridd release {job}"
        assert e.causes[1:] == ["no connected worker can run it: no worker is connected"]  # once released
        assert e.workers == []


async def test_a_job_waiting_on_a_dependency_names_it_and_its_state(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        first = await client.submit(["true"], queue="nowhere")
        (second,) = await client.submit_many([JobSpec(argv=["true"], queue="nowhere")], after=[first])
        e = await client.why(second)
        assert e.job.state == "waiting"
        assert e.reason == f"waiting for 1 dependency to succeed: {first} (queued)"
        assert [(d.id, d.state) for d in e.dependencies] == [(first, "queued")]
        assert e.remedy is not None and "dependencies succeeding" in e.remedy


async def test_a_tag_no_worker_has_and_a_queue_no_worker_serves_are_named_per_worker(tmp_path: Path) -> None:
    async with (
        running_broker(tmp_path) as b,
        client_of(b) as client,
        running_worker(tmp_path, b.addr, name="w1", tags={"gpu": "t4"}),
    ):
        await eventually(lambda: _connected(client, "w1"))
        tagged = await submit_one(client, JobSpec(argv=["true"], requires={"gpu": "a100"}))
        elsewhere = await client.submit(["true"], queue="batch")

        e = await client.why(tagged)
        assert e.reason == "no connected worker can run it: no worker serving queue 'default' has the tag gpu=a100"
        assert fits(e) == {"w1": "it lacks the tag gpu=a100 (it has gpu=t4)"}
        assert e.remedy == "a worker serving queue 'default' with its tags (gridd worker --tag gpu=a100)"

        e = await client.why(elsewhere)
        assert e.reason == "no connected worker can run it: no worker serves queue 'batch'"
        assert fits(e) == {"w1": "it does not serve queue 'batch'"}
        assert e.remedy is not None and "gridd worker --queue batch" in e.remedy


async def test_full_slots_name_the_blocking_job_then_running_and_finished_say_where(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    async with (
        running_broker(tmp_path) as b,
        client_of(b) as client,
        running_worker(tmp_path, b.addr, name="w1", slots=1),
    ):
        blocking = await submit_one(client, hold(marks))
        await eventually(lambda: started(marks, blocking))
        waiting = await client.submit(["true"])

        e = await client.why(waiting)
        assert e.reason == "queued: every worker that could run it is busy or taken back by its owner"
        assert fits(e) == {"w1": f"all 1 of its slots are busy: job {blocking}"}
        assert e.remedy == f"it starts when one of these frees up: w1 (all 1 of its slots are busy: job {blocking})"

        e = await client.why(blocking)
        assert e.reason == "running on w1, attempt 1 of 3"
        assert e.job.started_ms is not None and e.workers == []

        (marks / f"go-{blocking}").touch()
        await eventually(
            lambda: state_of(client, waiting), what=f"job {waiting} to succeed", holds=lambda s: s == "succeeded"
        )
        e = await client.why(blocking)
        assert e.reason == "succeeded with exit code 0 on w1"
        assert [(a.attempt, a.worker, a.outcome) for a in e.attempts] == [(1, "w1", "exited")]
        assert e.remedy is None


async def test_owner_busy_draining_and_a_queue_limited_credential_are_each_a_workers_obstacle(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        limited, _ = await client.create_token("desk-c", "worker", queues=["cad"])
        job = await client.submit(["true"], queue="default")
        # Workers as the broker sees them: what each registered with (the state its idle probe reported).
        async with (
            open_connection(b.addr, TOKEN, role="worker", name="desk-a") as a,
            open_connection(b.addr, TOKEN, role="worker", name="desk-b") as d,
            open_connection(b.addr, limited, role="worker", name="desk-c") as c,
        ):
            await a.request(lambda rid: _register(rid, ["default"], "owner-busy"))
            await d.request(lambda rid: _register(rid, ["default"], "draining"))
            await c.request(lambda rid: _register(rid, ["cad"], "idle"))
            e = await client.why(job)
        assert fits(e) == {
            "desk-a": "its owner is using the machine (owner-busy)",
            "desk-b": "draining: it is shutting down",
            "desk-c": "its credential serves only 'cad'",
        }
        assert e.reason == "queued: every worker that could run it is busy or taken back by its owner"
        assert e.remedy is not None and "desk-a (its owner is using the machine" in e.remedy


async def test_a_group_at_max_running_names_its_running_jobs(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    async with (
        running_broker(tmp_path) as b,
        client_of(b) as client,
        running_worker(tmp_path, b.addr, name="w1", slots=2),
    ):
        (first, second), group = await client.submit_group([hold(marks), hold(marks)], max_running=1)
        await eventually(lambda: started(marks, first))
        e = await client.why(second)
        assert e.reason == f"its group {group} is at --max-running 1: 1 running ({first})"
        assert e.remedy == f"one of the running jobs of group {group} finishing"
        assert fits(e) == {"w1": None}  # the worker would take it: the group is what holds it back
        (marks / f"go-{first}").touch()
        await eventually(lambda: started(marks, second))
        (marks / f"go-{second}").touch()


async def test_a_failed_attempt_waiting_out_its_retry_delay_says_until_when(tmp_path: Path) -> None:
    async with running_broker(tmp_path, retry_delay_s=600) as b, client_of(b) as client:
        async with running_worker(tmp_path, b.addr, name="w1"):
            job = await client.submit([sys.executable, "-c", "raise SystemExit(3)"], max_attempts=2)
            await eventually(lambda: _attempted(client, job))
        e = await client.why(job)
        assert e.reason.startswith("retry delay: attempt 1 of 2 failed; it may start again in ")
        assert e.not_before_ms is not None and e.not_before_ms > e.attempts[0].ended_ms
        assert [(a.worker, a.exit_code) for a in e.attempts] == [("w1", 3)]


async def test_an_unknown_job_is_refused_and_a_submit_token_explains_only_its_own(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with pytest.raises(UnknownJob, match="no job has id '999'"):
            await client.why("999")
        theirs = await client.submit(["true"], queue="nowhere")
        own, _ = await client.create_token("ci", "submit")
        async with open_connection(b.addr, own) as conn:
            with pytest.raises(Forbidden, match=f"may not explain job {theirs}: it belongs to 'admin'"):
                await Client(conn).why(theirs)


def _register(rid: int, queues: list[str], state: str) -> RegisterWorker:
    return RegisterWorker(rid=rid, host="desk", slots=1, queues=queues, state=state)


async def _connected(client: Client, name: str) -> bool:
    return any(w.name == name for w in await client.workers())


async def _attempted(client: Client, job: str) -> bool:
    view, attempts = await client.show(job)
    return view.state == "queued" and len(attempts) == 1

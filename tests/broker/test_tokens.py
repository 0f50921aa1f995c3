"""Role tokens on a real broker: made, listed and revoked by an admin; kept only as hashes; refused once
revoked or expired, with their open connections closed; and each role held to what it may do (owners,
queues, a worker's name and leases, a read token's blind spots)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anyio
import pytest

from gridd.broker.token_sessions import CHECK_EVERY_S
from gridd.client import Client, connect
from gridd.client.connection import open_connection
from gridd.protocol.errors import AuthFailed, Forbidden, InvalidRequest
from gridd.protocol.messages import (
    BundleFile,
    GetBlob,
    GetBundle,
    PushBundle,
    PutBlob,
    RegisterWorker,
    RequestJobs,
)
from tests.conftest import client_of, running_broker
from tests.store_rows import stored as store_rows


async def test_a_token_is_made_listed_used_and_kept_only_as_a_hash(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b:
        async with client_of(b) as admin:
            credential, view = await admin.create_token("ci", "submit", queues=["build", "test"], expires_s=86400)
            assert (view.name, view.role, view.queues, view.last_used_ms) == ("ci", "submit", ["build", "test"], None)
            assert view.expires_ms is not None and view.expires_ms > view.created_ms
            async with connect(b.addr, credential) as ci:
                await ci.status()
            (listed,) = await admin.tokens()
            assert listed.name == "ci" and listed.last_used_ms is not None  # the use shows in the list
            assert listed.revoked_ms is None
        # The database holds the sha256 of the secret, never the secret (whatever the credential's form).
        rows = store_rows(b.data_dir, "SELECT * FROM tokens")
        assert len(rows) == 1
        assert not any(isinstance(v, str) and len(v) > 8 and v in credential for v in rows[0])
        # The credential ends with its secret (the part after any prefix the broker puts before it).
        stored = rows[0][4]
        assert any(hashlib.sha256(credential[i:].encode()).hexdigest() == stored for i in range(len(credential)))


async def test_only_an_admin_makes_tokens_and_names_are_worker_names(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as admin:
        submit, _ = await admin.create_token("ci", "submit")
        async with connect(b.addr, submit) as ci:
            with pytest.raises(Forbidden, match=r"^token 'ci' \(role submit\) may not create tokens$"):
                await ci.create_token("mine", "admin")
            with pytest.raises(Forbidden, match="may not list tokens"):
                await ci.tokens()
        for name, why in (("bad name", "not a worker name"), ("admin", "cluster token"), ("ci", "revoke it first")):
            with pytest.raises(InvalidRequest, match=why):
                await admin.create_token(name, "read")
        with pytest.raises(InvalidRequest, match="unknown role"):
            await admin.create_token("x", "root")
        # A revoked token's name may be given again (rotation); the old credential stays refused.
        await admin.revoke_token("ci")
        fresh, _ = await admin.create_token("ci", "submit")
        with pytest.raises(AuthFailed):
            async with connect(b.addr, submit):
                pass
        async with connect(b.addr, fresh) as ci:
            await ci.status()


async def test_revoke_refuses_the_token_and_closes_its_connections_within_a_second(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as admin:
        credential, _ = await admin.create_token("ci", "submit")
        job = await admin.submit(["true"], queue="nobody-serves-this")  # never finishes: a wait stays open
        async with connect(b.addr, credential) as ci, connect(b.addr, credential) as ci2:
            own = await ci.submit(["true"], queue="nobody-serves-this")
            assert job != own

            closed_after: list[float] = []

            async def wait_until_closed() -> None:
                with pytest.raises(AuthFailed, match="token 'ci' was revoked"):
                    await ci.wait([own])  # a long poll in flight when the token is revoked
                closed_after.append(anyio.current_time() - revoked_at)

            with anyio.fail_after(3):  # the deadline of the whole wait for the close
                async with anyio.create_task_group() as tg:
                    tg.start_soon(wait_until_closed)
                    await ci2.status()  # a round trip on the other connection: the wait is sent by now
                    revoked_at = anyio.current_time()
                    _, closed = await admin.revoke_token("ci")
            assert closed == 2
            assert closed_after and closed_after[0] < 1.0
            with pytest.raises(AuthFailed):  # its other connection is closed too
                await ci2.status()
        with pytest.raises(AuthFailed, match="no such credential"):
            async with connect(b.addr, credential):
                pass
        (listed,) = await admin.tokens()
        assert listed.revoked_ms is not None


async def test_an_expired_token_is_refused_and_its_connections_closed_when_it_expires(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as admin:
        credential, view = await admin.create_token("short", "read", expires_s=1.0)
        async with connect(b.addr, credential) as short:
            await short.status()
            closed = anyio.Event()

            async def watch() -> None:
                with pytest.raises(AuthFailed, match="token 'short' has expired"):
                    async for _ in short.follow_events():
                        pass
                closed.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                with anyio.fail_after(1.0 + CHECK_EVERY_S + 2.0):  # expiry, the check's period, slack
                    await closed.wait()
        with pytest.raises(AuthFailed, match="no such credential"):
            async with connect(b.addr, credential):
                pass
        assert view.expires_ms == view.created_ms + 1000  # what `token list` shows: one second after it was made


async def test_a_submit_token_sees_and_controls_only_its_own_jobs(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as admin:
        alice, _ = await admin.create_token("alice", "submit")
        ci, _ = await admin.create_token("ci", "submit", queues=["build"])
        theirs = await admin.submit(["true"], queue="build")
        async with connect(b.addr, alice) as a, connect(b.addr, ci) as c:
            hers = await a.submit(["sleep", "100"], queue="build")
            mine = await c.submit(["true"], queue="build")
            assert (await admin.show(hers))[0].owner == "alice"
            assert (await admin.show(theirs))[0].owner == "admin"
            with pytest.raises(Forbidden) as refused:
                await c.cancel(hers)
            assert str(refused.value) == f"token 'ci' (role submit) may not cancel job {hers}: it belongs to 'alice'"
            with pytest.raises(Forbidden, match=f"may not show job {theirs}: it belongs to 'admin'"):
                await c.show(theirs)
            with pytest.raises(Forbidden, match="may not read the output of"):
                await c.output(hers)
            with pytest.raises(Forbidden, match="may not wait for"):
                await c.wait([mine, hers])
            with pytest.raises(Forbidden, match="may not wait for"):
                await c.submit(["true"], queue="build", after=[hers])
            with pytest.raises(Forbidden, match=r"may not submit to queue 'other': it submits only to 'build'"):
                await c.submit(["true"], queue="other")
            assert [j.id for j in await c.jobs()] == [mine]  # the listing is filtered to its own jobs
            assert (await c.show(mine))[0].owner == "ci"
            await c.cancel(mine)
            assert (await admin.show(hers))[0].state != "cancelled"  # nothing done to hers
            with pytest.raises(Forbidden, match="may not purge jobs"):
                await c.purge(0)


async def test_a_read_token_sees_jobs_but_never_output_env_or_arguments(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as admin:
        reader, _ = await admin.create_token("watcher", "read")
        job = await admin.submit(["sh", "-c", "echo the-secret-arg"], env={"PASSWORD": "hunter2"})
        async with connect(b.addr, reader) as r:
            shown, _ = await r.show(job)
            assert shown.argv == ["sh"] and shown.owner == "admin"
            (listed,) = await r.jobs()
            assert listed.argv == ["sh"]
            assert "the-secret-arg" not in repr(shown) and "hunter2" not in repr(listed)
            for read in (r.output(job), r.results([job]), r.submit(["true"])):
                with pytest.raises(Forbidden, match=r"^token 'watcher' \(role read\) may not "):
                    await read
            assert (await r.status()).counts["queued"] == 1  # counts, workers and events it does see
            await r.workers()


async def test_a_worker_token_registers_only_as_itself_serves_its_queues_and_fetches_only_leased_inputs(
    tmp_path: Path,
) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as admin:
        worker, _ = await admin.create_token("w1", "worker", queues=["cpu"])
        data, secret = b"the bundle's one file", b"someone else's"
        blob, other = hashlib.sha256(data).hexdigest(), hashlib.sha256(secret).hexdigest()
        for name, content, digest in (("tool", data, blob), ("secret", secret, other)):
            await admin.connection.request(
                lambda rid, c=content, d=digest: PutBlob(rid=rid, blob=d, size=len(c), offset=0, data=c)
            )
            files = [BundleFile(path="f", blob=digest, size=len(content))]
            await admin.connection.request(lambda rid, n=name, f=files: PushBundle(rid=rid, name=n, files=f))
        job = await admin.submit(["./f"], queue="cpu", bundle="tool")

        async with open_connection(b.addr, worker, role="worker", name="w2") as conn:
            with pytest.raises(Forbidden, match=r"^token 'w1' \(role worker\) may not register as worker 'w2'"):
                await conn.request(lambda rid: RegisterWorker(rid=rid, host="h", slots=1, queues=["cpu"]))
        async with open_connection(b.addr, worker, role="worker", name="w1") as conn:
            with pytest.raises(Forbidden, match="may not serve queue 'gpu': it serves only 'cpu'"):
                await conn.request(lambda rid: RegisterWorker(rid=rid, host="h", slots=1, queues=["cpu", "gpu"]))
            with pytest.raises(Forbidden, match="no job leased to it reads it"):
                await conn.request(lambda rid: GetBundle(rid=rid, ref="tool@1"))  # before it leases the job
            await conn.request(lambda rid: RegisterWorker(rid=rid, host="h", slots=1, queues=["cpu"], instance="ab"))
            leased = await conn.request(lambda rid: RequestJobs(rid=rid, max_jobs=1))
            assert [j.job_id for j in leased.jobs] == [job]
            got = await conn.request(lambda rid: GetBundle(rid=rid, ref="tool@1"))
            assert [f.blob for f in got.files] == [blob]
            assert (await conn.request(lambda rid: GetBlob(rid=rid, blob=blob))).data == data
            with pytest.raises(Forbidden, match="may not fetch bundle secret@1"):
                await conn.request(lambda rid: GetBundle(rid=rid, ref="secret@1"))
            with pytest.raises(Forbidden, match=f"may not fetch blob {other[:12]}"):
                await conn.request(lambda rid: GetBlob(rid=rid, blob=other))
            # Never a client's requests: no submit, no listing, no output of the job it runs.
            as_client = Client(conn)
            with pytest.raises(Forbidden, match="may not submit jobs"):
                await as_client.submit(["true"], queue="cpu")
            with pytest.raises(Forbidden, match="may not list jobs"):
                await as_client.jobs()
            with pytest.raises(Forbidden, match="may not read the output of jobs"):
                await as_client.output(job)

"""What a listener on the network sees, and who a peer trusts: a real broker over real TLS on 127.0.0.1,
with a recording TCP proxy between it and its peers."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from gridd.client import connect
from gridd.client.bundles import push
from gridd.client.trust import keep_ca
from gridd.config import ca_store_dir
from gridd.protocol.credentials import format_credential
from gridd.protocol.errors import TransportMismatch, UntrustedBroker
from tests.conftest import CA_DIGEST, CA_PEM, SECRET, TOKEN, running_broker, running_worker
from tests.recording_proxy import recording_proxy


@pytest.mark.parametrize("insecure", [False, True], ids=["tls", "insecure"])
async def test_a_jobs_argv_env_stdout_and_bundle_never_cross_the_wire_in_the_clear(
    tmp_path: Path, insecure: bool
) -> None:
    """Under --insecure the same markers are on the wire: the recording would show them (so this test can fail)."""
    tag = secrets.token_hex(8)
    marks = {k: f"{k}-mark-{tag}".encode() for k in ("argv", "env", "stdout", "bundle")}
    bundle_dir = tmp_path / "bundle"
    bundle_dir.mkdir()
    (bundle_dir / "data.txt").write_bytes(marks["bundle"] + b"\n")
    script = f"echo {marks['argv'].decode()} >/dev/null; cat data.txt; printf '%s%s\\n' stdout-mark- {tag}; echo $MARK"
    async with (
        running_broker(tmp_path, insecure=insecure) as b,
        recording_proxy(b.broker.port) as proxy,
        running_worker(tmp_path, proxy.addr, insecure=insecure),
        connect(proxy.addr, TOKEN, insecure=insecure) as client,
    ):
        await push(client.connection, "marked", bundle_dir)
        job = await client.submit(["sh", "-c", script], env={"MARK": marks["env"].decode()}, bundle="marked")
        with anyio.fail_after(30):
            (view,) = await client.wait([job])
        out, _ = await client.output(job)
        assert view.state == "succeeded", view
        for mark in (marks["bundle"], marks["stdout"], marks["env"]):
            assert mark in out  # they travelled (the job saw them), through the proxy
        assert proxy.connections >= 2  # the client and the worker
        on_wire = {name: proxy.seen(mark) for name, mark in marks.items()} | {"secret": proxy.seen(SECRET.encode())}
        if insecure:
            assert all(on_wire.values()), on_wire
        else:
            assert not any(on_wire.values()), on_wire


async def test_a_client_pinned_to_one_ca_refuses_a_broker_of_another_and_sends_it_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The impostor (a broker with its own CA) even knows the secret: had the client sent Hello, it would
    have been let in. The client stops at the certificate, on a first contact (the BrokerCA check) and
    with the CA kept (ssl verifies): no Hello arrived, no session was opened, nothing was kept."""
    async with running_broker(tmp_path, own_ca=True, token=SECRET) as impostor:
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "fresh-config"))  # a client on another machine
        assert impostor.broker.ca_digest != CA_DIGEST
        for kept in (False, True):
            if kept:
                keep_ca(CA_DIGEST, CA_PEM.decode(), os.environ)
            with (
                capture_logs() as logs,
                anyio.fail_after(10),
                pytest.raises(UntrustedBroker, match="not the one your credential names") as refused,
            ):
                async with connect(impostor.addr, TOKEN):
                    pass
            assert "\n" not in str(refused.value)
            events = [e["event"] for e in logs]
            assert "auth.failed" not in events and "conn.opened" not in events, events
        assert os.listdir(ca_store_dir(os.environ)) == [f"{CA_DIGEST}.pem"]


async def test_a_credential_of_another_ca_is_refused_at_first_contact_without_sending_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_broker(tmp_path, own_ca=True, token=SECRET) as b:  # its own CA, our secret
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "fresh-config"))  # elsewhere, no CA kept
        other = format_credential("ab" * 32, SECRET)
        with (
            capture_logs() as logs,
            anyio.fail_after(10),
            pytest.raises(UntrustedBroker, match="not the one your credential names"),
        ):
            async with connect(b.addr, other):
                pass
        assert not any(e["event"] in ("auth.failed", "conn.opened") for e in logs), logs
        assert not (tmp_path / "fresh-config" / "gridd" / "ca").exists() or not any(
            (tmp_path / "fresh-config" / "gridd" / "ca").iterdir()
        )
        # The broker's own credential bootstraps, and its CA is kept for next time.
        async with connect(b.addr, b.broker.credential_for(SECRET)) as client:
            assert (await client.status()).workers == 0
        assert (tmp_path / "fresh-config" / "gridd" / "ca" / f"{b.broker.ca_digest}.pem").exists()


async def test_a_plain_secret_with_no_ca_kept_is_refused_before_anything_is_dialled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_broker(tmp_path) as b, recording_proxy(b.broker.port) as proxy:
        # Another user's environment (the broker keeps its CA for the user who runs it).
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "fresh-config"))
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "no-local-broker"))
        with pytest.raises(UntrustedBroker, match="plain secret") as refused:
            async with connect(proxy.addr, SECRET):
                pass
        assert "\n" not in str(refused.value) and "gridd login" in str(refused.value)
        assert proxy.connections == 0


async def test_a_plain_secret_is_checked_against_the_local_brokers_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gridd broker & gridd submit` on one machine: the local broker's data dir holds the CA (and the
    broker kept it for the user who runs it, whatever its --data-dir)."""
    async with running_broker(tmp_path) as b:
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "another-config"))  # only the data dir says
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "gridd").symlink_to(b.data_dir)
        async with connect(b.addr, SECRET) as client:
            assert (await client.status()).workers == 0
        monkeypatch.undo()
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "no-local-broker"))  # only the user's CA store says
        async with connect(b.addr, SECRET) as client:
            assert (await client.status()).workers == 0


@pytest.mark.parametrize("broker_insecure", [True, False], ids=["tls-client", "plain-client"])
async def test_a_transport_mismatch_is_one_line_that_says_how_to_fix_it(tmp_path: Path, broker_insecure: bool) -> None:
    async with running_broker(tmp_path, insecure=broker_insecure) as b:
        with anyio.fail_after(10), pytest.raises(TransportMismatch) as refused:
            async with connect(b.addr, TOKEN, insecure=not broker_insecure):
                pass
    message = str(refused.value)
    assert "\n" not in message and "--insecure" in message
    assert ("does not speak TLS" in message) == broker_insecure

"""The broker's check of a presented secret: the cluster token is the admin credential, nothing else is."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gridd.broker.credentials import Credentials
from gridd.broker.principals import CLUSTER_ADMIN
from gridd.cli.main import root_cause
from gridd.client import connect
from gridd.protocol.credentials import format_credential
from gridd.protocol.errors import AuthFailed, ConfigError
from tests.conftest import CA_DIGEST, SECRET, TOKEN, running_broker, seed_ca


async def test_the_cluster_token_is_the_admin_and_anything_else_is_nobody() -> None:
    credentials = Credentials("the-cluster-secret-of-this-grid")
    assert await credentials.authenticate("the-cluster-secret-of-this-grid") == CLUSTER_ADMIN
    for wrong in ("", "the-cluster-secret-of-this-gri", "the-cluster-secret-of-this-grid\n", "x" * 512):
        assert await credentials.authenticate(wrong) is None


async def test_a_token_with_bytes_that_are_not_utf8_in_the_environment_still_authenticates() -> None:
    """GRIDD_TOKEN is read from os.environ, which decodes undecodable bytes as surrogates (PEP 383)."""
    token = os.fsdecode(b"s\xe9cret-of-a-grid-with-latin1-bytes")
    credentials = Credentials(token)
    assert await credentials.authenticate(token) == CLUSTER_ADMIN
    assert await credentials.authenticate("secret-of-a-grid-with-latin1-bytes") is None


async def test_a_client_with_another_token_is_refused_by_a_real_broker(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as b:
        with pytest.raises(AuthFailed, match="no such credential"):
            async with connect(b.addr, TOKEN + "-not"):
                pass
        async with connect(b.addr, TOKEN) as client:
            assert (await client.status()).workers == 0


async def test_an_older_token_file_with_the_plain_secret_becomes_the_credential_string(tmp_path: Path) -> None:
    """Its secret stays, so whatever used the old text keeps authenticating; the file gains the CA's pin."""
    data_dir = tmp_path / "broker"
    seed_ca(data_dir)
    (data_dir / "token").write_text(SECRET + "\n")
    (data_dir / "token").chmod(0o600)
    async with running_broker(tmp_path, token=None) as b:
        text = (data_dir / "token").read_text().strip()
        assert text == format_credential(CA_DIGEST, SECRET) == b.broker.credential_for(SECRET)
        assert stat.S_IMODE((data_dir / "token").stat().st_mode) == 0o600
        async with connect(b.addr, text) as client:
            assert (await client.status()).workers == 0


async def test_a_token_file_others_can_read_stops_the_broker_with_the_chmod_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "broker"
    seed_ca(data_dir)
    (data_dir / "token").write_text(SECRET + "\n")
    (data_dir / "token").chmod(0o644)
    with pytest.raises(BaseException) as raised:  # from inside the broker's task group
        async with running_broker(tmp_path, token=None):
            pass
    refused = root_cause(raised.value)
    assert isinstance(refused, ConfigError)
    assert str(refused).endswith(f"is readable by others (mode 0644): chmod 600 {data_dir / 'token'}")

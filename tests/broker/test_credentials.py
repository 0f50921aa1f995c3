"""The broker's check of a presented secret: the cluster token is the admin credential, nothing else is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gridd.broker.credentials import Credentials
from gridd.broker.principals import CLUSTER_ADMIN
from gridd.client import connect
from gridd.protocol.errors import AuthFailed
from tests.conftest import TOKEN, running_broker


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

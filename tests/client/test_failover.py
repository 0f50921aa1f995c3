"""Several brokers behind one address setting: the first that answers is used, in the order given; the
client stays on the one that answered until it goes away, then moves to the next; each is checked as
strictly as one alone. Real brokers on 127.0.0.1 (each its own SQLite data dir), real sockets."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream, TaskGroup, TaskStatus

from gridd.client import addresses, connect
from gridd.client.addresses import TRY_EACH_S
from gridd.config import load_config, parse_address, parse_addresses
from gridd.protocol.errors import ConfigError, ConnectionLost, UntrustedBroker
from tests.conftest import SECRET, TOKEN, BrokerHandle, running_broker

pytestmark = pytest.mark.anyio


def dead_address() -> str:
    """An address nothing listens on (a port just freed): connecting there is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def answered_by(addresses: str) -> str:
    """Which broker of `addresses` a new connection lands on."""
    async with connect(addresses, TOKEN) as client:
        await client.status()
        return client.connection.address


@asynccontextmanager
async def silent_listener() -> AsyncIterator[str]:
    """Accepts connections and never says a word (a broker that hangs): its address."""

    async def hold(stream: SocketStream) -> None:
        async with stream:
            await anyio.sleep_forever()

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, hold)
        yield f"127.0.0.1:{listener.extra(SocketAttribute.local_port)}"
        tg.cancel_scope.cancel()


async def broker_in_task(
    tg: TaskGroup, data: Path, **overrides: Any
) -> tuple[BrokerHandle, Callable[[], Awaitable[None]]]:
    """A broker run by a task of `tg`, so that it can stop while connections made after it stay open;
    its handle and the function that stops it (returning once it has)."""
    stop, stopped = anyio.Event(), anyio.Event()

    async def run(*, task_status: TaskStatus[BrokerHandle]) -> None:
        async with running_broker(data, **overrides) as handle:
            task_status.started(handle)
            await stop.wait()
        stopped.set()

    handle: BrokerHandle = await tg.start(run)

    async def halt() -> None:
        stop.set()
        await stopped.wait()

    return handle, halt


# ---- the setting ------------------------------------------------------------------------------------------


def test_a_list_keeps_its_order_and_ipv6_entries_in_brackets() -> None:
    entries = parse_addresses("[::1]:7420, 127.0.0.1:7421,broker-b.example:7420")
    assert entries == ["[::1]:7420", "127.0.0.1:7421", "broker-b.example:7420"]
    assert parse_address(entries[0]) == ("::1", 7420)
    assert parse_addresses("[::1]:7420") == ["[::1]:7420"]  # one address, as before


@pytest.mark.parametrize(
    ("text", "entry"), [("a:7420,b", "'b'"), ("a:7420,,b:7420", "''"), ("a:7420,b:99999", "'b:99999'")]
)
def test_a_malformed_entry_is_a_config_error_naming_it(text: str, entry: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_addresses(text)
    assert str(raised.value) == f"broker address {entry} (in {text!r}) is not HOST:PORT"
    with pytest.raises(ConfigError, match="^broker address 'b' is not HOST:PORT$"):
        parse_addresses("b")  # one address: the message it always had


def test_the_config_file_may_give_the_brokers_as_a_list(tmp_path: Path) -> None:
    path = tmp_path / "gridd.toml"
    path.write_text('[worker]\nbroker = ["a:7420", "b:7420"]\n[client]\nbroker = "c:7420,d:7420"\n')
    config = load_config(path, {}, {})
    assert config.worker.broker == "a:7420,b:7420"
    assert config.client.broker == "c:7420,d:7420"


# ---- which broker answers ---------------------------------------------------------------------------------


async def test_the_first_that_answers_is_used_in_the_order_given(tmp_path: Path) -> None:
    dead = dead_address()
    async with running_broker(tmp_path / "a") as a, running_broker(tmp_path / "b") as b:
        assert await answered_by(f"{dead},{b.addr},{a.addr}") == b.addr  # the first is down: the next
        assert await answered_by(f"{a.addr},{b.addr}") == a.addr  # both up: the first


async def test_a_client_stays_on_the_broker_it_moved_to_and_moves_on_when_that_one_goes_away(tmp_path: Path) -> None:
    async with anyio.create_task_group() as tg:
        b, stop_b = await broker_in_task(tg, tmp_path / "b")
        a, stop_a = await broker_in_task(tg, tmp_path / "a")
        both = f"{a.addr},{b.addr}"
        async with connect(both, TOKEN) as client:
            assert client.connection.address == a.addr
            await stop_a()
            with pytest.raises(ConnectionLost, match=f"broker at {a.addr}"):
                await client.status()  # A went away under the open connection
            assert await answered_by(both) == b.addr  # a reconnection moves to the next
        _, stop_a = await broker_in_task(tg, tmp_path / "a", listen=a.addr)  # A is back, on its port
        assert await answered_by(both) == b.addr  # no flapping back to the first while B serves
        async with connect(both, TOKEN) as client:
            await stop_b()
            with pytest.raises(ConnectionLost):
                await client.status()
        assert await answered_by(both) == a.addr  # B went away: round to A
        await stop_a()


async def test_a_first_broker_that_comes_up_later_does_not_take_the_client_back(tmp_path: Path) -> None:
    late = dead_address()
    async with anyio.create_task_group() as tg:
        b, stop_b = await broker_in_task(tg, tmp_path / "b")
        both = f"{late},{b.addr}"
        assert await answered_by(both) == b.addr
        _, stop_a = await broker_in_task(tg, tmp_path / "a", listen=late)
        assert await answered_by(both) == b.addr  # B still serves: stay
        await stop_b()
        assert await answered_by(both) == late
        await stop_a()


def test_the_rules_of_the_order_stay_then_move_on_past_the_one_that_went_away() -> None:
    brokers = ["a:1", "b:1", "c:1"]
    assert addresses.order(brokers) == brokers  # nothing known: as given
    addresses.answered(brokers, "b:1")
    assert addresses.order(brokers) == ["b:1", "c:1", "a:1"]  # stay on the one that answered
    addresses.went_away(brokers, "a:1")  # an older connection to A ended: B is still in use
    assert addresses.order(brokers)[0] == "b:1"
    addresses.went_away(brokers, "b:1")
    assert addresses.order(brokers) == ["c:1", "a:1", "b:1"]  # the next first, the lost one last
    addresses.went_away(brokers, "c:1")
    assert addresses.order(brokers) == brokers  # round to the first
    assert addresses.order(["a:1"]) == ["a:1"]


async def test_a_broker_that_hangs_is_passed_over_after_its_time(tmp_path: Path) -> None:
    async with silent_listener() as silent, running_broker(tmp_path) as b:
        started = anyio.current_time()
        with anyio.fail_after(TRY_EACH_S + 10):
            assert await answered_by(f"{silent},{b.addr}") == b.addr
        assert TRY_EACH_S <= anyio.current_time() - started < TRY_EACH_S + 5


async def test_when_none_answers_one_line_says_why_for_each() -> None:
    first, second = dead_address(), dead_address()
    with pytest.raises(ConnectionLost) as raised:
        await answered_by(f"{first},{second}")
    message = str(raised.value)
    assert message.startswith(f"no broker of {first},{second} answered: cannot connect to the broker at {first}")
    assert f"cannot connect to the broker at {second}" in message and "\n" not in message


# ---- trust ------------------------------------------------------------------------------------------------


async def test_each_broker_of_the_list_is_checked_against_the_credentials_ca(tmp_path: Path) -> None:
    """A broker of another CA in the list, though it would accept our secret, never gets it: the client goes
    on to one of ours, and with none of ours left it says the one it found is not trusted (not merely
    "cannot connect")."""
    other_grid = running_broker(tmp_path / "other", own_ca=True, token=SECRET)
    async with other_grid as other, running_broker(tmp_path / "ours") as ours:
        assert await answered_by(f"{other.addr},{ours.addr}") == ours.addr
        with pytest.raises(UntrustedBroker, match=f"the broker at {other.addr} is not the one your credential"):
            await answered_by(f"{dead_address()},{other.addr}")
        with pytest.raises(UntrustedBroker):
            await answered_by(other.addr)  # alone, as before

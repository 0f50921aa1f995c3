"""Nothing is trusted from the network, against a real broker over real TCP: bad frames, oversized
prefixes, wrong tokens, other protocol versions, requests out of place and slow subscribers each end
(or are refused on) that one connection with a clear Error frame, and the broker keeps serving everyone
else. Raw sockets speak the protocol by hand where gridd's own client would refuse to misbehave."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import anyio
import msgspec
import pytest
from anyio.abc import ByteStream, SocketAttribute, SocketStream
from structlog.testing import capture_logs

from gridd.broker.session import FLUSH_S
from gridd.client import connect
from gridd.protocol.credentials import format_credential
from gridd.protocol.errors import AuthFailed, BadFrame, ErrorCode, NotAWorker
from gridd.protocol.frames import MAX_FRAME_BYTES, FrameDecoder, encode_frame
from gridd.protocol.messages import (
    BrokerMessage,
    CompleteJobs,
    Error,
    EventBatch,
    GetStatus,
    Hello,
    JobResult,
    JobSpec,
    ListJobs,
    RequestJobs,
    StatusReported,
    SubmitJobs,
    Subscribe,
    Subscribed,
    Welcome,
)
from gridd.protocol.version import PROTOCOL_VERSION
from tests.conftest import (
    CA_DIGEST,
    SECRET,
    TOKEN,
    BrokerHandle,
    client_of,
    eventually,
    running_broker,
    tls_connect,
    tls_wrap,
)

NET_S = 10


class Raw:
    """A raw connection to the broker (TLS, past the broker's BrokerCA frame) that reads frames with
    gridd's own decoder."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.decoder: FrameDecoder[Any] = FrameDecoder(BrokerMessage)
        self.pending: list[Any] = []

    async def send(self, data: bytes) -> None:
        with anyio.fail_after(NET_S):
            await self.stream.send(data)

    async def receive(self) -> Any:
        """The next frame from the broker; EOFError when it closed the connection."""
        with anyio.fail_after(NET_S):
            while not self.pending:
                try:
                    data = await self.stream.receive(65536)
                except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError) as exc:
                    raise EOFError from exc
                self.pending = self.decoder.feed(data)
        return self.pending.pop(0)

    async def until_closed(self, most: int = 1000) -> list[Any]:
        """Every frame the broker still sends, then its close (fails if it does not close, or sends more
        than `most` frames first)."""
        frames = []
        for _ in range(most):
            try:
                frames.append(await self.receive())
            except EOFError:
                return frames
        raise AssertionError(f"the broker sent {most} frames and did not close the connection: {frames[-3:]}")

    async def handshake(self, token: str = SECRET, version: int = PROTOCOL_VERSION, name: str = "raw") -> Any:
        await self.send(encode_frame(Hello(version=version, role="client", name=name, secret=token)))
        return await self.receive()


async def raw(handle: BrokerHandle) -> Raw:
    with anyio.fail_after(NET_S):
        return Raw(await tls_connect(handle.broker.port))


def frame_of(body: Any) -> bytes:
    data = msgspec.msgpack.encode(body)
    return len(data).to_bytes(4, "big") + data


def closing_error(frames: list[Any]) -> Error:
    """The broker's last word on a connection it closes: one Error frame for no request (rid None)."""
    assert frames, "the broker closed the connection without saying why"
    last = frames[-1]
    assert isinstance(last, Error) and last.rid is None, frames
    return last


async def still_serves(handle: BrokerHandle) -> None:
    """A normal client can submit and read back a job on the same broker."""
    with anyio.fail_after(NET_S):
        async with client_of(handle) as client:
            job_id = await client.submit(["true"])
            view, _ = await client.show(job_id)
            assert view.state == "queued"


async def jobs_in(handle: BrokerHandle) -> int:
    return len((await handle.broker.store.list_jobs(None, None, 0))[0])


# ---- before the handshake ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [b"\x00\x00\x00\x03\xc1\xc1\xc1", b"\x00\x00\x00\x02\x92\x01", frame_of({"op": "no.such.op", "rid": 1})],
    ids=["not-msgpack", "not-a-message", "unknown-op"],
)
async def test_garbage_gets_a_bad_frame_error_and_a_close_and_others_are_still_served(
    tmp_path: Any, garbage: bytes
) -> None:
    async with running_broker(tmp_path) as b:
        conn = await raw(b)
        with capture_logs() as logs:
            await conn.send(garbage)
            assert closing_error(await conn.until_closed()).code == ErrorCode.BAD_FRAME
        assert any(e["event"] == "conn.refused" and e.get("code") == ErrorCode.BAD_FRAME for e in logs), logs
        await still_serves(b)


async def test_an_oversized_length_prefix_is_refused_at_once_without_waiting_for_the_body(tmp_path: Any) -> None:
    async with running_broker(tmp_path) as b:
        conn = await raw(b)
        await conn.send((MAX_FRAME_BYTES + 1).to_bytes(4, "big"))  # the prefix alone: no body ever follows
        assert closing_error(await conn.until_closed()).code == ErrorCode.FRAME_TOO_LARGE
        await still_serves(b)


async def test_before_authentication_even_a_frame_of_100_kb_is_refused_at_once(tmp_path: Any) -> None:
    """A stranger (or garbage whose first bytes read as a modest length) cannot make the broker wait for,
    or buffer, a large body: the handshake's frames are small."""
    async with running_broker(tmp_path) as b:
        conn = await raw(b)
        await conn.send((100_000).to_bytes(4, "big"))  # under the 16 MiB limit, over the handshake's
        with anyio.fail_after(NET_S):
            assert closing_error(await conn.until_closed()).code == ErrorCode.FRAME_TOO_LARGE
        await still_serves(b)


async def test_a_stray_http_request_is_refused_as_too_large_a_frame(tmp_path: Any) -> None:
    async with running_broker(tmp_path) as b:
        conn = await raw(b)
        await conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # "GET " read as a length is ~1.1 GB
        assert closing_error(await conn.until_closed()).code == ErrorCode.FRAME_TOO_LARGE
        await still_serves(b)


async def test_a_request_before_the_handshake_is_refused_and_nothing_is_submitted(tmp_path: Any) -> None:
    async with running_broker(tmp_path) as b:
        conn = await raw(b)
        await conn.send(encode_frame(SubmitJobs(rid=1, jobs=[JobSpec(argv=["touch", "/tmp/pwned"])])))
        assert closing_error(await conn.until_closed()).code == ErrorCode.BAD_FRAME
        assert await jobs_in(b) == 0
        await still_serves(b)


async def test_a_request_after_a_hello_without_a_credential_is_refused_and_nothing_is_submitted(
    tmp_path: Any,
) -> None:
    async with running_broker(tmp_path) as b:
        conn = await raw(b)
        hello = encode_frame(Hello(version=PROTOCOL_VERSION, role="client", name="x"))
        await conn.send(hello + encode_frame(SubmitJobs(rid=1, jobs=[JobSpec(argv=["true"])])))
        assert isinstance(closing_error(await conn.until_closed()), Error)
        assert await jobs_in(b) == 0


async def test_a_peer_with_the_wrong_token_gets_auth_failed_and_the_broker_logs_it(tmp_path: Any) -> None:
    async with running_broker(tmp_path) as b:
        conn = await raw(b)
        with capture_logs() as logs:
            error = await conn.handshake(token="not-the-token")
            assert isinstance(error, Error) and error.code == ErrorCode.AUTH_FAILED
            assert await conn.until_closed() == []
        assert [e for e in logs if e["event"] == "auth.failed"], logs
        assert TOKEN not in repr(logs) and "not-the-token" not in repr(logs)  # never log a token
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):  # TLS knows it is closed
            await conn.send(encode_frame(SubmitJobs(rid=1, jobs=[JobSpec(argv=["true"])])))
        assert await jobs_in(b) == 0
        await still_serves(b)


async def test_a_client_with_the_wrong_token_gets_auth_failed_and_the_broker_logs_the_attempt(tmp_path: Any) -> None:
    async with running_broker(tmp_path) as b:
        with capture_logs() as logs:
            with anyio.fail_after(NET_S), pytest.raises(AuthFailed):
                async with connect(b.addr, format_credential(CA_DIGEST, "not-the-token")):
                    pass

            async def logged() -> bool:
                return any(e["event"] == "auth.failed" for e in logs)

            await eventually(logged, within_s=2)
        await still_serves(b)


async def test_a_peer_speaking_another_protocol_version_gets_unsupported_version(tmp_path: Any) -> None:
    async with running_broker(tmp_path) as b:
        conn = await raw(b)
        error = await conn.handshake(version=PROTOCOL_VERSION + 1)
        assert isinstance(error, Error) and (error.rid, error.code) == (None, ErrorCode.UNSUPPORTED_VERSION)
        assert str(PROTOCOL_VERSION + 1) in error.message
        assert await conn.until_closed() == []
        await still_serves(b)


# ---- after the handshake ------------------------------------------------------------------------------------------


async def test_garbage_after_a_good_handshake_closes_only_that_connection(tmp_path: Any) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as other:
        conn = await raw(b)
        assert isinstance(await conn.handshake(), Welcome)
        await conn.send(encode_frame(GetStatus(rid=5)))
        assert isinstance(await conn.receive(), StatusReported)
        await conn.send(b"\x00\x00\x00\x03\xc1\xc1\xc1")
        assert closing_error(await conn.until_closed()).code == ErrorCode.BAD_FRAME
        with anyio.fail_after(NET_S):
            job_id = await other.submit(["true"])  # the connection opened before is untouched
            assert (await other.show(job_id))[0].id == job_id


async def test_an_oversized_frame_after_the_handshake_closes_only_that_connection(tmp_path: Any) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as other:
        conn = await raw(b)
        assert isinstance(await conn.handshake(), Welcome)
        await conn.send((2**32 - 1).to_bytes(4, "big"))
        assert closing_error(await conn.until_closed()).code == ErrorCode.FRAME_TOO_LARGE
        with anyio.fail_after(NET_S):
            assert isinstance(await other.status(), StatusReported)


async def test_a_worker_request_from_a_client_is_refused_and_the_connection_stays_usable(tmp_path: Any) -> None:
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with anyio.fail_after(NET_S):
            job_id = await client.submit(["true"])
            with pytest.raises(NotAWorker):
                await client.connection.request(lambda rid: RequestJobs(rid=rid, max_jobs=1))
            result = JobResult(job_id=job_id, lease=1, exit_code=0, outcome="exited", started_ms=1, ended_ms=2)
            with pytest.raises(NotAWorker):
                await client.connection.request(lambda rid: CompleteJobs(rid=rid, results=[result]))
            view, _ = await client.show(job_id)  # same connection, still served
        assert view.state == "queued"


@pytest.mark.parametrize(
    "request_of",
    [
        lambda rid: ListJobs(rid=rid, limit=2**64 - 1),
        lambda rid: SubmitJobs(rid=rid, jobs=[JobSpec(argv=["true"])], new_group=True, max_running=2**64 - 1),
    ],
    ids=["list-limit", "max-running"],
)
async def test_a_number_too_large_for_the_database_is_refused_as_a_bad_frame_and_the_broker_keeps_serving(
    tmp_path: Any, request_of: Any
) -> None:
    """Numbers off the wire are bounded on decode: one past what the database holds is a bad frame
    (it used to crash the session with OverflowError, and the peer saw only a closed socket)."""
    async with running_broker(tmp_path) as b, client_of(b) as client:
        with anyio.fail_after(NET_S):
            await client.submit(["true"])
            with pytest.raises(BadFrame):
                await client.connection.request(request_of)
        await still_serves(b)


# ---- slow subscribers ------------------------------------------------------------------------------------------------


async def test_a_subscriber_that_stops_reading_is_dropped_with_slow_consumer_and_others_are_unaffected(
    tmp_path: Any,
) -> None:
    jobs = 30_000  # more events than the hub keeps for one subscriber (2,000 here), plus what the sockets hold
    spec = JobSpec(argv=["true"], queue="q" * 200)  # long queue names: big events fill the socket sooner
    async with running_broker(tmp_path, max_pending_events=2000) as b, client_of(b) as submitter:
        slow = await raw(b)
        assert isinstance(await slow.handshake(), Welcome)
        await slow.send(encode_frame(Subscribe(rid=1)))
        assert isinstance(await slow.receive(), Subscribed)
        with capture_logs() as logs:
            with anyio.fail_after(60):
                ids = await submitter.submit_many([spec] * jobs)  # `slow` reads nothing meanwhile
            assert len(ids) == jobs

            async def dropped() -> bool:
                return any(e["event"] == "events.subscriber_dropped" for e in logs)

            await eventually(dropped, within_s=10)
        with anyio.fail_after(NET_S):
            status = await submitter.status()  # the broker and its other clients carry on
        assert status.counts["queued"] == jobs
        frames = await slow.until_closed()
        events = [e for f in frames if isinstance(f, EventBatch) for e in f.events]
        assert len(events) < jobs  # it was cut off, not buffered without bound
        last = frames[-1]
        assert isinstance(last, Error) and (last.rid, last.code) == (None, ErrorCode.SLOW_CONSUMER)
        await still_serves(b)


def broker_side_state(broker_port: int, peer_port: int) -> str | None:
    """The TCP state (hex, as /proc/net/tcp has it: 01 established) of the broker's end of one connection."""
    local, remote = f"0100007F:{broker_port:04X}", f"0100007F:{peer_port:04X}"
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return fields[3]
    return None


async def test_a_dropped_subscriber_that_never_reads_again_is_disconnected_within_seconds(tmp_path: Any) -> None:
    """The broker closes its end although the peer reads nothing: the dropped session does not hang in send.

    Events come in many small batches, so the session is blocked handing frames to its full outbox (its
    writer blocked on the full socket) when the hub drops it, which is the case that used to hang."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no autotuning: the socket fills sooner
    async with running_broker(tmp_path, max_pending_events=100) as b, client_of(b) as submitter:
        sock.connect(("127.0.0.1", b.broker.port))
        slow = Raw(await tls_wrap(await SocketStream.from_socket(sock)))
        peer_port = slow.stream.extra(SocketAttribute.local_port)
        assert isinstance(await slow.handshake(), Welcome)
        await slow.send(encode_frame(Subscribe(rid=1)))
        assert isinstance(await slow.receive(), Subscribed)
        assert broker_side_state(b.broker.port, peer_port) == "01"
        spec = JobSpec(argv=["true"], queue="q" * 255)
        with capture_logs() as logs:

            def dropped() -> bool:
                return any(e["event"] == "events.subscriber_dropped" for e in logs)

            async def submit_until_dropped() -> None:
                for _ in range(400):  # bounded: 16 x 400 batches of 4 jobs at most
                    if dropped():
                        return
                    await submitter.submit_many([spec] * 4)  # `slow` reads nothing, now or later

            with anyio.fail_after(120):
                async with anyio.create_task_group() as tg:
                    for _ in range(16):
                        tg.start_soon(submit_until_dropped)
            assert dropped()

        async def closed_by_the_broker() -> bool:
            return broker_side_state(b.broker.port, peer_port) != "01"

        await eventually(closed_by_the_broker, within_s=FLUSH_S + 5, every_s=0.1)
        await still_serves(b)
        await slow.stream.aclose()

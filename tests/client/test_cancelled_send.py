"""A request given up while its frame is being written (a worker's lease request, cancelled when a job
ends and its budget grows) must not break the connection: the frame is written whole, and the next
requests go through. Before, a cancellation in the middle of a TLS write left the stream broken for good:
the worker lost its connection, reconnected and sent its results again (the broker refused the copies)."""

from __future__ import annotations

from pathlib import Path

import anyio

from gridd.client.connection import Connection, open_connection
from gridd.protocol.messages import JobSpec, Ping, Pong, SubmitJobs
from tests.conftest import TOKEN, client_of, running_broker

STDIN_BYTES = 3 * 1024 * 1024  # a frame that takes many writes to go out (the limit is 4 MiB)
GIVE_UP_AFTER_S = (0.0005, 0.001, 0.002, 0.004, 0.008)  # into the second frame's write, one of them


async def test_a_request_cancelled_while_its_frame_is_written_leaves_the_connection_working(tmp_path: Path) -> None:
    big = JobSpec(argv=["true"], stdin=b"x" * STDIN_BYTES)

    answered = [0]

    async def submit(conn: Connection) -> None:
        await conn.request(lambda rid: SubmitJobs(rid=rid, jobs=[big]))
        answered[0] += 1

    async with running_broker(tmp_path) as b, open_connection(b.addr, TOKEN) as conn:
        with anyio.fail_after(60):
            for give_up_s in GIVE_UP_AFTER_S:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(submit, conn)  # the broker busy reading and storing this one
                    await anyio.lowlevel.checkpoint()
                    with anyio.move_on_after(give_up_s):  # while this one is written: given up
                        await submit(conn)
                assert isinstance(await conn.request(lambda rid: Ping(rid=rid)), Pong)
            # A submit given up before its frame began is not sent; one given up during its write is sent
            # whole (recorded, its reply unread); none is sent in part.
            async with client_of(b) as client:
                recorded = len(await client.jobs(limit=0))
            assert answered[0] <= recorded <= 2 * len(GIVE_UP_AFTER_S)

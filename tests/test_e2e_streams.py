"""Durable Streams across real processes: the official client follows a session, drops
and resumes, across a server restart; two Daphne processes serve the same streams.

A session's reply is written by a separate writer process (``tests/stream_writer.py``)
through the session service, as an agent worker does. The follower is the official
``@durable-streams/client`` under Node (``tests/streams_follow.mjs``). Seq lists are
compared with ``range(...)``: no gap, no duplicate. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from channels.db import database_sync_to_async
from rest_framework.authtoken.models import Token

from durable_sessions import service, wire
from durable_sessions.models import DurableSession
from durable_sessions.stream_offsets import format_offset
from tests import services
from tests.factories import make_user
from tests.live import ROOT, DaphneServer, server_env
from tests.stream_writer import chunks
from tests.test_e2e_processes import writer  # noqa: F401 - the writer process fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.timeout(120)]

db = database_sync_to_async
FOLLOW = ROOT / "tests" / "streams_follow.mjs"
READ_TIMEOUT = 30.0


class Follower:
    """One run of the official client on a stream; collects the batches it prints."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.batches: list[dict[str, Any]] = []

    @property
    def items(self) -> list[dict[str, Any]]:
        return [item for batch in self.batches for item in batch["items"]]

    @property
    def offset(self) -> str:
        return self.batches[-1]["offset"]

    async def read_until(self, seq: int) -> None:
        async with asyncio.timeout(READ_TIMEOUT):
            while not self.items or self.items[-1]["seq"] < seq:
                line = await self.process.stdout.readline()  # type: ignore[union-attr]
                assert line, "the client stopped early"
                self.batches.append(json.loads(line))

    async def drop(self) -> None:
        self.process.kill()
        await self.process.wait()

    async def finish(self) -> None:
        async with asyncio.timeout(READ_TIMEOUT):
            out, _ = await self.process.communicate()
        self.batches.extend(json.loads(line) for line in out.decode().splitlines())
        assert self.process.returncode == 0


async def follow(url: str, token: str, offset: str, live: str, until: str = "") -> Follower:
    node = services.require_node_packages()
    process = await asyncio.create_subprocess_exec(
        *(node, str(FOLLOW), url, token, offset, live, until),
        cwd=ROOT / "tests",
        stdout=asyncio.subprocess.PIPE,
    )
    return Follower(process)


def owned_session() -> tuple[DurableSession, str]:
    owner = make_user("owner")
    return service.create_session(owner=owner, title="t"), Token.objects.create(user=owner).key


async def test_the_official_client_follows_an_answer_across_a_drop_and_a_restart(
    postgres,
    redis_url,
    daphne,
    writer,  # noqa: F811
):
    services.require_node_packages()
    env = server_env(redis_url=redis_url)
    first, second = daphne(env), daphne(env)
    session, token = await db(owned_session)()
    count = 60
    # Live over SSE on one process, from before the reply starts until the writer pauses;
    # then the connection drops.
    url = f"{first.http}/v1/session/{session.pk}"
    live = await follow(url, token, "-1", "sse", wire.MESSAGE_COMPLETED)
    await live.read_until(1)
    running = await writer(env, session.pk, count=count, delay=0.01, pause_after=25)
    paused_at = await running.wait_paused()
    await live.read_until(paused_at)
    await live.drop()
    offset = live.offset
    assert offset == format_offset(live.items[-1]["seq"])

    # The server restarts while the reply goes on being written.
    first.stop()
    await running.resume()
    first = DaphneServer(env, first.port).start()
    try:
        resumed = await follow(url, token, offset, "long-poll", wire.MESSAGE_COMPLETED)
        await resumed.finish()
        # Meanwhile the other process serves the whole session from the start.
        other = await follow(
            f"{second.http}/v1/session/{session.pk}", token, "-1", "sse", wire.MESSAGE_COMPLETED
        )
        await other.finish()
    finally:
        first.stop()
    summary = await running.finish()

    events = live.items + resumed.items
    assert [e["seq"] for e in events] == list(range(1, summary["last_seq"] + 1))
    assert [e["seq"] for e in other.items] == list(range(1, summary["last_seq"] + 1))
    text = "".join(e["data"]["text"] for e in events if e["type"] == wire.MESSAGE_DELTA)
    assert text == "".join(chunks(count))


async def test_two_processes_serve_the_same_generic_streams(postgres, redis_url, daphne):
    env = server_env(redis_url=redis_url, ds_settings={"STREAMS_ACCESS": "anyone"})
    first, second = daphne(env), daphne(env)
    path = "/v1/stream/shared/1"
    async with httpx.AsyncClient(timeout=READ_TIMEOUT) as client:
        created = await client.put(
            first.http + path, headers={"Content-Type": "application/json"}, content=b"[]"
        )
        assert created.status_code == 201
        tail = created.headers["Stream-Next-Offset"]

        async def wait_on_second() -> httpx.Response:
            return await client.get(f"{second.http}{path}?offset={tail}&live=long-poll")

        waiting = asyncio.create_task(wait_on_second())
        await asyncio.sleep(0.5)  # let the long poll start waiting (it would also catch up)
        for n in range(5):
            appended = await client.post(
                first.http + path,
                headers={"Content-Type": "application/json"},
                content=json.dumps({"n": n}).encode(),
            )
            assert appended.status_code == 204
        woken = await waiting
        assert woken.status_code == 200 and json.loads(woken.content)[0] == {"n": 0}
        # Both processes read the same stream, byte for byte.
        on_first = await client.get(f"{first.http}{path}?offset=-1")
        on_second = await client.get(f"{second.http}{path}?offset=-1")
        assert on_first.content == on_second.content
        assert json.loads(on_second.content) == [{"n": n} for n in range(5)]
        closed = await client.post(first.http + path, headers={"Stream-Closed": "true"})
        assert closed.status_code == 204
        final = await client.get(
            f"{second.http}{path}?offset={closed.headers['Stream-Next-Offset']}"
        )
        assert final.headers["Stream-Closed"] == "true"


async def test_appends_from_two_processes_to_one_stream_are_each_stored_once_in_order(
    postgres, redis_url, daphne
):
    env = server_env(redis_url=redis_url, ds_settings={"STREAMS_ACCESS": "anyone"})
    servers = [daphne(env), daphne(env)]
    path = "/v1/stream/contended"
    count = 40
    async with httpx.AsyncClient(timeout=READ_TIMEOUT) as client:
        created = await client.put(servers[0].http + path, headers={"Content-Type": "text/plain"})
        assert created.status_code == 201

        async def append(n: int) -> str:
            response = await client.post(
                servers[n % 2].http + path,
                headers={"Content-Type": "text/plain"},
                content=f"<{n:03d}>".encode(),
            )
            assert response.status_code == 204
            return response.headers["Stream-Next-Offset"]

        offsets = await asyncio.gather(*(append(n) for n in range(count)))
        whole = await client.get(f"{servers[1].http}{path}?offset=-1")
    # Every offset handed out once; the stream holds every append once, in offset order.
    assert len(set(offsets)) == count
    stored = whole.content.decode()
    assert sorted(stored[i : i + 5] for i in range(0, len(stored), 5)) == [
        f"<{n:03d}>" for n in range(count)
    ]
    assert whole.headers["Stream-Next-Offset"] == max(offsets) == format_offset(count, 5 * count)

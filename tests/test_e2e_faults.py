"""The fault matrix: real servers, a real agent worker and churning clients, while
PostgreSQL and Redis go away and a server is killed mid-stream.

Two Daphne processes and one ``run_agents`` worker reach PostgreSQL and Redis through
:class:`tests.faults.FaultProxy`, so that an outage cuts their connections the way a
restart does without touching the services the rest of the suite uses. Customers stream
long replies; their clients drop and reconnect at random, to either server, resuming with
``after_seq``. Proved for every client: every event exactly once, in order (0 lost,
0 doubled, 0 out of order), the reply whole; afterwards no presence ghost, no 5xx, and
nothing but documented codes on the way.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async
from django.db import connection

from durable_sessions import service, wire
from durable_sessions.models import Event, Message
from tests.factories import anonymous_session
from tests.faults import FaultProxy
from tests.live import server_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.timeout(240)]

db = database_sync_to_async

REPLY = " ".join(f"w{i}" for i in range(700))
SESSIONS = 4
# Close codes a client may meet here: normal closes, a killed server (no close frame),
# and the documented codes that tell a client to reconnect.
ALLOWED_CLOSES = {1000, 1001, 1006, 1012, 4401, 4408, 4500}
# Error frames a client that only reads may meet.
ALLOWED_ERRORS = {"unavailable", "internal_error"}


class Follower:
    """A customer's device that keeps dropping and resuming, recording every log event."""

    def __init__(self, servers: list[Any], session_id: Any, cookie: str) -> None:
        self.servers = servers
        self.session_id = session_id
        self.cookie = cookie
        self.events: list[dict[str, Any]] = []
        self.closes: list[int] = []
        self.errors: list[str] = []
        self.handshake_failures = 0
        self.stop = asyncio.Event()

    @property
    def last_seq(self) -> int:
        return self.events[-1]["seq"] if self.events else 0

    async def run(self) -> None:
        while not self.stop.is_set():
            server = random.choice(self.servers)
            try:
                ws = await websockets.connect(
                    f"{server.ws}/ws/sessions/{self.session_id}/?after_seq={self.last_seq}",
                    origin=server.http,
                    additional_headers={"Cookie": self.cookie},
                    open_timeout=5,
                )
            except (OSError, TimeoutError, websockets.InvalidHandshake):
                # Documented: a failed handshake (5xx, refused, no answer) is retried.
                self.handshake_failures += 1
                await asyncio.sleep(0.3)
                continue
            await self._read(ws, random.uniform(0.5, 2.5))

    async def _read(self, ws: Any, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                async for raw in ws:
                    self._record(json.loads(raw))
        except TimeoutError:
            await ws.close()  # a tab switch: drop and come back later
        except websockets.ConnectionClosed:
            pass
        if ws.close_code is not None:
            self.closes.append(ws.close_code)

    def _record(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "error":
            self.errors.append(frame.get("code"))
        frames = frame["events"] if frame.get("type") == "events" else [frame]
        for f in frames:
            if f.get("type") in wire.ALL_TYPES and isinstance(f.get("seq"), int):
                assert f["seq"] == self.last_seq + 1, (f["seq"], self.last_seq)
                self.events.append(f)


def proxied_env(pg: FaultProxy, redis: FaultProxy, redis_url: str) -> dict[str, str]:
    redis_parts = urlsplit(redis_url)
    env = server_env(
        redis_url=f"redis://127.0.0.1:{redis.port}{redis_parts.path or '/0'}",
        ds_settings={
            "RUNNER": "worker",
            "LEASE_TIMEOUT": 20.0,
            "HEARTBEAT_INTERVAL": 1.0,
            "RUN_SWEEP_INTERVAL": 0.5,
            "PRESENCE_HEARTBEAT": 0.5,
            "PRESENCE_TTL": 2.0,
            "PRESENCE_SWEEP": 0.3,
            "AGENT_OPTIONS": {"thinking_seconds": 0, "tokens_per_second": 60, "reply": REPLY},
        },
    )
    db_url = urlsplit(env["DATABASE_URL"])
    env["DATABASE_URL"] = db_url._replace(netloc=f"{db_url.username}@127.0.0.1:{pg.port}").geturl()
    return env


async def wait_for(predicate: Any, seconds: float) -> bool:
    for _ in range(int(seconds / 0.2)):
        if await predicate():
            return True
        await asyncio.sleep(0.2)
    return False


async def test_nothing_is_lost_doubled_or_reordered_through_outages_and_kills(
    daphne, agent_worker, postgres, redis_url
):
    settings_db = connection.settings_dict
    pg = FaultProxy(settings_db["HOST"] or "127.0.0.1", int(settings_db["PORT"] or 5432)).start()
    redis_parts = urlsplit(redis_url)
    redis = FaultProxy(redis_parts.hostname or "127.0.0.1", redis_parts.port or 6379).start()
    try:
        env = proxied_env(pg, redis, redis_url)
        a, b = daphne(env), daphne(env)
        agent_worker(env, "faults-worker")
        followers = []
        for i in range(SESSIONS):
            session, store = await db(anonymous_session)(f"visitor-{i}")
            followers.append(Follower([a, b], session.id, f"sessionid={store.session_key}"))
        tasks = [asyncio.create_task(f.run()) for f in followers]
        for f in followers:  # each asks a question; the worker streams a long reply
            await db(service.post_customer_message)(f.session_id, "tell me everything")

        await asyncio.sleep(2)
        pg.outage(2.0)  # a PostgreSQL restart, as its clients see it
        await asyncio.sleep(4)
        redis.outage(3.0)  # Redis down: no wake-ups, no presence, no run announcements
        await asyncio.sleep(5)
        a.kill()  # kill -9 of a server mid-stream
        await asyncio.sleep(1)
        a.start()

        async def replies_done() -> bool:
            return not await Message.objects.filter(role="assistant", state="streaming").aexists()

        assert await wait_for(replies_done, 90), "a reply never ended"

        async def caught_up() -> bool:
            for f in followers:
                last = await Event.objects.filter(session_id=f.session_id).acount()
                if f.last_seq < last:
                    return False
            return True

        assert await wait_for(caught_up, 30), "a client never caught up"
        for f in followers:
            f.stop.set()
        await asyncio.gather(*tasks)

        for f in followers:
            stored = [
                seq
                async for seq in Event.objects.filter(session_id=f.session_id)
                .order_by("seq")
                .values_list("seq", flat=True)
            ]
            assert [e["seq"] for e in f.events] == stored == list(range(1, len(stored) + 1))
            reply = await Message.objects.aget(session_id=f.session_id, role="assistant")
            text = "".join(e["data"]["text"] for e in f.events if e["type"] == "message.delta")
            assert reply.state == "complete" and reply.content == text == REPLY
            assert set(f.closes) <= ALLOWED_CLOSES, f.closes
            assert set(f.errors) <= ALLOWED_ERRORS, f.errors

        await asyncio.sleep(2 * 2.0)  # PRESENCE_TTL, twice: every dropped device expired
        for server in (a, b):
            async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
                response = await http.get("/ds/sessions/")
                assert response.status_code < 500, response.text
            ws = await websockets.connect(
                f"{server.ws}/ws/sessions/{followers[0].session_id}/?after_seq=0",
                origin=server.http,
                additional_headers={"Cookie": followers[0].cookie},
            )
            snapshot = json.loads(await ws.recv())
            assert snapshot["presence"]["customer"]["devices"] == 1  # this one; no ghost
            await ws.close()
    finally:
        pg.stop()
        redis.stop()

"""Presence across two real server processes sharing Redis, and after a kill -9."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from channels.db import database_sync_to_async
from django.contrib.sessions.backends.db import SessionStore

from tests.factories import anonymous_session, make_user
from tests.live import server_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.timeout(60)]


def logged_in_cookie(user) -> str:
    store = SessionStore()
    store["_auth_user_id"] = str(user.pk)
    store["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    store["_auth_user_hash"] = user.get_session_auth_hash()
    store.save()
    return f"sessionid={store.session_key}"


async def connect(server, session_id, cookie: str):
    ws = await websockets.connect(
        f"{server.ws}/ws/sessions/{session_id}/",
        origin=server.http,
        additional_headers={"Cookie": cookie},
    )
    snapshot = json.loads(await ws.recv())
    assert snapshot["type"] == "snapshot", snapshot
    return ws, snapshot


async def presence_until(ws, predicate, limit: int = 200) -> dict:
    for _ in range(limit):
        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if frame["type"] == "presence" and predicate(frame):
            return frame
    raise AssertionError("no matching presence frame")


async def test_presence_crosses_processes_and_a_killed_process_leaves_no_ghost(
    daphne, postgres, redis_url
):
    env = server_env(
        redis_url=redis_url,
        ds_settings={
            "PRESENCE_HEARTBEAT": 0.5,
            "PRESENCE_TTL": 2.0,
            "PRESENCE_SWEEP": 0.3,
            "TYPING_TIMEOUT": 5.0,
        },
    )
    a, b = daphne(env), daphne(env)
    session, store = await database_sync_to_async(anonymous_session)()
    olga = await database_sync_to_async(make_user)("olga", operator=True)
    customer_cookie = f"sessionid={store.session_key}"
    operator_cookie = await database_sync_to_async(logged_in_cookie)(olga)

    phone, _ = await connect(a, session.id, customer_cookie)
    console, snapshot = await connect(b, session.id, operator_cookie)
    assert snapshot["presence"]["customer"]["devices"] == 1  # the phone, on the other process
    laptop, _ = await connect(b, session.id, customer_cookie)
    await presence_until(console, lambda f: f["customer"]["devices"] == 2)
    await presence_until(phone, lambda f: f["operators"] and f["customer"]["devices"] == 2)

    await phone.send(json.dumps({"type": "typing", "state": "start"}))
    await presence_until(console, lambda f: f["customer"]["typing"])

    a.kill()  # the phone's process dies without a goodbye
    seen = await presence_until(
        console, lambda f: f["customer"]["devices"] == 1 and not f["customer"]["typing"]
    )
    assert seen["customer"]["online"]  # the laptop is still here
    await laptop.close()
    await presence_until(console, lambda f: not f["customer"]["online"])
    await console.close()


async def test_through_a_redis_restart_typing_times_out_and_nobody_shows_offline(
    daphne, postgres, redis_url
):
    """Redis goes away and comes back empty (a restart keeps nothing), reached through a
    fault proxy so that the suite's own Redis stays up."""
    import time
    from urllib.parse import urlsplit

    import redis

    from tests.faults import FaultProxy

    parts = urlsplit(redis_url)
    proxy = FaultProxy(parts.hostname or "127.0.0.1", parts.port or 6379).start()
    # A heartbeat longer than the test: only the re-put after the outage can restore
    # the entries the restart lost.
    env = server_env(
        redis_url=f"redis://127.0.0.1:{proxy.port}{parts.path or '/0'}",
        ds_settings={
            "PRESENCE_HEARTBEAT": 20.0,
            "PRESENCE_TTL": 60.0,
            "PRESENCE_SWEEP": 0.3,
            "TYPING_TIMEOUT": 1.5,
        },
    )
    try:
        a, b = daphne(env), daphne(env)
        session, store = await database_sync_to_async(anonymous_session)()
        olga = await database_sync_to_async(make_user)("olga", operator=True)
        phone, _ = await connect(a, session.id, f"sessionid={store.session_key}")
        console, snapshot = await connect(
            b, session.id, await database_sync_to_async(logged_in_cookie)(olga)
        )
        assert snapshot["presence"]["customer"]["online"]
        await phone.send(json.dumps({"type": "typing", "state": "start"}))
        await presence_until(console, lambda f: f["customer"]["typing"])

        outage = 5.0
        proxy.outage(outage)
        back_at = time.monotonic() + outage
        direct = redis.Redis.from_url(redis_url)
        direct.delete(f"ds:presence:{session.id}")  # what the restart loses

        ended = await presence_until(console, lambda f: not f["customer"]["typing"])
        assert time.monotonic() < back_at  # typing ended while Redis was still away
        assert ended["customer"]["online"]

        await asyncio.sleep(max(0.0, back_at - time.monotonic()))
        frames = []
        try:
            async with asyncio.timeout(4.0):  # many sweeps, far less than a heartbeat
                while True:
                    frame = json.loads(await console.recv())
                    if frame["type"] == "presence":
                        frames.append(frame)
        except TimeoutError:
            pass
        assert all(f["customer"]["online"] for f in frames), frames
        # The customer's process put its entry back without waiting for a heartbeat.
        stored = direct.hgetall(f"ds:presence:{session.id}")
        assert len(stored) == 2, stored
        direct.close()
        await phone.close()
        await presence_until(console, lambda f: not f["customer"]["online"])
        await console.close()
    finally:
        proxy.stop()

"""A visitor's limits hold across two real server processes sharing Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from channels.db import database_sync_to_async

from durable_sessions import service
from durable_sessions.delivery import limits
from tests.factories import anonymous_session
from tests.live import server_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.timeout(90)]


async def connect(server: Any, session_id: Any, cookie: str) -> tuple[Any, dict[str, Any]]:
    ws = await websockets.connect(
        f"{server.ws}/ws/sessions/{session_id}/",
        origin=server.http,
        additional_headers={"Cookie": cookie},
    )
    return ws, json.loads(await asyncio.wait_for(ws.recv(), 30))


async def refused(server: Any, session_id: Any, cookie: str) -> dict[str, Any]:
    ws, frame = await connect(server, session_id, cookie)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == limits.CLOSE_CODE
    return frame


async def test_a_visitors_connection_limit_holds_across_two_processes(daphne, postgres, redis_url):
    env = server_env(
        redis_url=redis_url,
        ds_settings={"LIMIT_CONNECTIONS_PER_VISITOR": 3, "LIMIT_CONNECTIONS_PER_SESSION": 2},
    )
    a, b = daphne(env), daphne(env)
    session, store = await database_sync_to_async(anonymous_session)("v-e2e-limits")
    other = await database_sync_to_async(service.create_session)(visitor="v-e2e-limits")
    cookie = f"sessionid={store.session_key}"

    first, snapshot = await connect(a, session.id, cookie)
    assert snapshot["type"] == "snapshot"
    second, snapshot = await connect(b, session.id, cookie)
    assert snapshot["type"] == "snapshot"
    # Two in this session, one on each process: a third is refused by either.
    frame = await refused(a, session.id, cookie)
    assert frame["type"] == "error" and frame["code"] == "rate_limited"
    assert frame["retry_after"] >= 1
    third, snapshot = await connect(a, other.id, cookie)
    assert snapshot["type"] == "snapshot"
    await refused(b, other.id, cookie)  # three in all
    # Closing one on process A frees a place for process B.
    await first.close()
    for _ in range(100):
        ws, frame = await connect(b, other.id, cookie)
        if frame["type"] == "snapshot":
            break
        await ws.wait_closed()  # A had not seen the close yet: try again shortly
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the freed place was never given to process B")
    for socket in (second, third, ws):
        await socket.close()

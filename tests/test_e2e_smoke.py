"""A real Daphne process and a real websocket client: connect, send, receive."""

from __future__ import annotations

import json

import pytest
import websockets
from channels.db import database_sync_to_async

from tests.factories import anonymous_session
from tests.live import server_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


async def test_a_message_round_trip_through_a_real_server(daphne):
    session, store = await database_sync_to_async(anonymous_session)()
    server = daphne(server_env())
    async with websockets.connect(
        f"{server.ws}/ws/sessions/{session.id}/?after_seq=0",
        origin=server.http,
        additional_headers={"Cookie": f"sessionid={store.session_key}"},
    ) as ws:
        frames = [json.loads(await ws.recv()) for _ in range(3)]
        assert [f["type"] for f in frames] == ["snapshot", "session.created", "live"]
        await ws.send(json.dumps({"type": "message.send", "content": "hi", "client_id": "1"}))
        got = [json.loads(await ws.recv()) for _ in range(2)]
        assert {f["type"] for f in got} == {"ack", "message.created"}


async def test_a_foreign_origin_is_refused(daphne):
    session, store = await database_sync_to_async(anonymous_session)()
    server = daphne(server_env())
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(
            f"{server.ws}/ws/sessions/{session.id}/",
            origin="http://evil.example",
            additional_headers={"Cookie": f"sessionid={store.session_key}"},
        ):
            pass
    assert info.value.response.status_code == 403

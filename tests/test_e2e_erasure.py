"""Erasure across processes: ``manage.py ds_erase`` in a process of its own deletes a
customer's session while two real Daphne processes (PostgreSQL, Redis) hold connections
to it; both close with 4410, and a reconnect is refused with 4403."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
import websockets
from channels.db import database_sync_to_async
from websockets.exceptions import ConnectionClosed

from durable_sessions.models import DeletionRecord, DurableSession
from tests.factories import anonymous_session
from tests.live import ROOT, server_env

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.e2e,
    pytest.mark.timeout(90),
]
READ_TIMEOUT = 20


async def connect(server, session_id, store):
    ws = await websockets.connect(
        f"{server.ws}/ws/sessions/{session_id}/?after_seq=0",
        origin=server.http,
        additional_headers={"Cookie": f"sessionid={store.session_key}"},
        open_timeout=READ_TIMEOUT,
    )
    async with asyncio.timeout(READ_TIMEOUT):
        while json.loads(await ws.recv())["type"] != "live":
            pass
    return ws


async def close_code(ws) -> int:
    """The close code the server sends, skipping any frame before it."""
    async with asyncio.timeout(READ_TIMEOUT):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return closed.rcvd.code


async def test_an_erasure_in_another_process_closes_connections_on_every_server(
    daphne, postgres, redis_url
):
    session, store = await database_sync_to_async(anonymous_session)("v-erase-e2e")
    env = server_env(redis_url=redis_url)
    servers = [daphne(env), daphne(env)]
    sockets = [await connect(server, session.id, store) for server in servers]

    erase = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "manage.py", "ds_erase", "--visitor", "v-erase-e2e", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert erase.returncode == 0, erase.stderr
    assert json.loads(erase.stdout.strip().splitlines()[-1])["deleted"] == 1

    assert [await close_code(ws) for ws in sockets] == [4410, 4410]
    again = await websockets.connect(
        f"{servers[0].ws}/ws/sessions/{session.id}/?after_seq=0",
        origin=servers[0].http,
        additional_headers={"Cookie": f"sessionid={store.session_key}"},
    )
    assert await close_code(again) == 4403
    exists = database_sync_to_async(DurableSession.objects.filter(pk=session.pk).exists)
    assert not await exists()
    record = await database_sync_to_async(DeletionRecord.objects.get)()
    assert (record.kind, record.via, record.subject) == ("erasure", "command", "visitor")

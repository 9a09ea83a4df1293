"""The agent runtime with real processes: Daphne servers, worker processes, kill -9."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from channels.db import database_sync_to_async

from durable_sessions.models import AgentRun, Control, DurableSession, Message, RunStatus
from tests.factories import anonymous_session
from tests.live import server_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.timeout(90)]

LONG_REPLY = " ".join(f"part{i}" for i in range(300))


async def connect(server, session, store, after_seq: int = 0):
    return await websockets.connect(
        f"{server.ws}/ws/sessions/{session.id}/?after_seq={after_seq}",
        origin=server.http,
        additional_headers={"Cookie": f"sessionid={store.session_key}"},
    )


async def read_until(ws, predicate, limit: int = 5000) -> list[dict[str, Any]]:
    frames = []
    for _ in range(limit):
        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
        frames.append(frame)
        if predicate(frame):
            return frames
    raise AssertionError("predicate never matched")


def of_type(kind: str):
    return lambda frame: frame.get("type") == kind


def text_of(frames) -> str:
    return "".join(f["data"]["text"] for f in frames if f.get("type") == "message.delta")


async def test_kill_9_of_the_worker_mid_stream_is_detected_and_escalated(
    daphne, agent_worker, postgres, redis_url
):
    env = server_env(
        redis_url=redis_url,
        ds_settings={
            "RUNNER": "worker",
            "RUN_MAX_ATTEMPTS": 1,  # no retry (test_e2e_retries covers retries)
            "LEASE_TIMEOUT": 2.0,
            "HEARTBEAT_INTERVAL": 0.5,
            "RUN_SWEEP_INTERVAL": 0.3,
            "AGENT_OPTIONS": {"thinking_seconds": 0, "tokens_per_second": 60, "reply": LONG_REPLY},
        },
    )
    server = daphne(env)
    workers = {name: agent_worker(env, name) for name in ("alpha", "beta")}
    session, store = await database_sync_to_async(anonymous_session)()
    ws = await connect(server, session, store)
    await read_until(ws, of_type("live"))
    await ws.send(json.dumps({"type": "message.send", "content": "hello", "client_id": "c1"}))
    frames = await read_until(ws, of_type("message.delta"))
    frames += await read_until(ws, of_type("message.delta"))
    run = await AgentRun.objects.aget()
    assert run.status == RunStatus.RUNNING and run.worker in workers
    workers[run.worker].kill()
    # The reaper's one write: the failed reply, the escalation, the notice, then the status.
    frames += await read_until(ws, lambda f: f.get("status") == "unresponsive")
    failed = next(f for f in frames if f.get("type") == "message.failed")
    changed = next(f for f in frames if f.get("type") == "control.changed")
    assert changed["data"]["control"] == "queued"
    assert changed["data"]["reason"] == "agent unresponsive"
    assert not [f for f in frames if f.get("type") == "message.delta" and f["seq"] > failed["seq"]]
    assert any(f.get("type") == "agent.status" and f["status"] == "unresponsive" for f in frames)
    reply = await Message.objects.aget(role="assistant")
    assert reply.state == "failed" and reply.content == text_of(frames)
    assert (await AgentRun.objects.aget(pk=run.pk)).status == RunStatus.CRASHED
    assert (await DurableSession.objects.aget(pk=session.pk)).control == Control.QUEUED
    await ws.close()


async def test_an_embedded_run_goes_on_after_every_client_left(daphne):
    env = server_env(
        ds_settings={
            "RUNNER": "embedded",
            "AGENT_OPTIONS": {"thinking_seconds": 0, "tokens_per_second": 150, "reply": LONG_REPLY},
        }
    )
    server = daphne(env)
    session, store = await database_sync_to_async(anonymous_session)()
    ws = await connect(server, session, store)
    await read_until(ws, of_type("live"))
    await ws.send(json.dumps({"type": "message.send", "content": "hello", "client_id": "c1"}))
    seen = await read_until(ws, of_type("message.delta"))
    await ws.close()
    for _ in range(300):  # the reply completes with nobody connected
        if await AgentRun.objects.filter(status=RunStatus.COMPLETED).aexists():
            break
        await asyncio.sleep(0.1)
    last = max(f["seq"] for f in seen if "at" in f)
    again = await connect(server, session, store, after_seq=last)
    rest = await read_until(again, of_type("live"))
    assert text_of(seen) + text_of(rest) == LONG_REPLY
    assert any(f.get("type") == "message.completed" for f in rest)
    await again.close()


async def test_a_message_posted_over_http_is_answered_without_any_websocket(daphne):
    import httpx

    env = server_env(
        ds_settings={
            "RUNNER": "embedded",
            "AGENT_OPTIONS": {"thinking_seconds": 0, "tokens_per_second": 0, "reply": "Hi there"},
        }
    )
    server = daphne(env)
    headers = {"Origin": server.http, "Referer": server.http + "/"}
    async with httpx.AsyncClient(base_url=server.http, headers=headers, timeout=10) as http:
        await http.get("/ds/sessions/")  # sets the CSRF cookie
        csrf = {"X-CSRFToken": http.cookies["csrftoken"]}
        created = await http.post("/ds/sessions/", json={"title": "http only"}, headers=csrf)
        assert created.status_code == 201, created.text
        session_id = created.json()["id"]
        posted = await http.post(
            f"/ds/sessions/{session_id}/messages/",
            json={"content": "hello", "client_id": "h1"},
            headers=csrf,
        )
        assert posted.status_code == 201, posted.text
        for _ in range(100):
            if await Message.objects.filter(role="assistant", state="complete").aexists():
                break
            await asyncio.sleep(0.1)
        reply = await Message.objects.aget(role="assistant")
        assert reply.content == "Hi there" and str(reply.session_id) == session_id


async def test_a_run_left_pending_by_a_restart_is_answered_when_the_server_starts(daphne):
    """The embedded worker starts with the server, not with its first connection."""
    from durable_sessions import service
    from durable_sessions.models import Participant

    session, _ = await database_sync_to_async(anonymous_session)()
    customer = await Participant.objects.aget(session=session, kind="customer")
    # Stored while no server runs: the run waits in the database.
    await database_sync_to_async(service.post_message)(
        session.id, author=customer, content="hello", client_id="before-restart"
    )
    run = await AgentRun.objects.aget(session=session)
    assert run.status == RunStatus.PENDING
    daphne(
        server_env(
            ds_settings={
                "RUNNER": "embedded",
                "AGENT_OPTIONS": {"thinking_seconds": 0, "tokens_per_second": 0, "reply": "Hi"},
            }
        )
    )
    for _ in range(150):  # nobody connects, nobody posts: only the server's own worker
        run = await AgentRun.objects.aget(pk=run.pk)
        if run.status == RunStatus.COMPLETED:
            break
        await asyncio.sleep(0.1)
    assert run.status == RunStatus.COMPLETED
    reply = await Message.objects.aget(session=session, role="assistant")
    assert (reply.content, reply.state) == ("Hi", "complete")

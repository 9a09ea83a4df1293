"""Interrupted runs with real processes: kill -9 and SIGTERM of `run_agents` workers
while they answer, real websocket clients throughout, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import pytest
import websockets
from channels.db import database_sync_to_async

from durable_sessions import service
from durable_sessions.models import AgentRun, Message, MessagePart, ParticipantKind, RunStatus
from durable_sessions.runtime.tool_calls import OUTCOME_UNKNOWN
from tests.factories import anonymous_session
from tests.live import server_env
from tests.resume_agents import count

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.timeout(120)]

REPLY = " ".join(f"piece{i}" for i in range(80))
FAST_REAPING = {
    "RUNNER": "worker",
    "LEASE_TIMEOUT": 2.0,
    "HEARTBEAT_INTERVAL": 0.5,
    "RUN_SWEEP_INTERVAL": 0.3,
}


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


def completed(frame) -> bool:
    return frame.get("type") == "message.completed"


def reader_text(frames) -> str:
    """The reply's text as a client reads it: its text parts, a cut part left out."""
    texts: dict[str, str] = {}
    for f in frames:
        data = f.get("data", {})
        if f.get("type") == "message.delta" and data.get("part_id"):
            texts[data["part_id"]] = texts.get(data["part_id"], "") + data["text"]
        elif f.get("type") == "part.ended" and data.get("cut"):
            texts.pop(data["part_id"], None)
    return "".join(texts.values())


async def start(daphne, agent_worker, redis_url, ds_settings):
    env = server_env(redis_url=redis_url, ds_settings={**FAST_REAPING, **ds_settings})
    server = daphne(env)
    workers = {name: agent_worker(env, name) for name in ("alpha", "beta")}
    session, store = await database_sync_to_async(anonymous_session)()
    ws = await connect(server, session, store)
    await read_until(ws, lambda f: f.get("type") == "live")
    await ws.send(json.dumps({"type": "message.send", "content": "hello", "client_id": "c1"}))
    return server, workers, session, store, ws


async def finished(run_id: int) -> AgentRun:
    """The run once its worker's finishing write is in (it follows the completed reply)."""
    for _ in range(400):
        run = await AgentRun.objects.aget(pk=run_id)
        if run.status not in (RunStatus.PENDING, RunStatus.RUNNING):
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never finished")


async def holder() -> AgentRun:
    for _ in range(400):
        run = await AgentRun.objects.filter(status=RunStatus.RUNNING).afirst()
        if run is not None:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError("no run is running")


async def test_kill_9_after_a_tool_call_is_finished_by_another_worker_without_repeats(
    daphne, agent_worker, postgres, redis_url, tmp_path
):
    log = str(tmp_path / "calls.log")
    server, workers, session, store, ws = await start(
        daphne,
        agent_worker,
        redis_url,
        {
            "AGENT": "tests.resume_agents.ToolThenTextAgent",
            "AGENT_OPTIONS": {"log": log, "reply": REPLY, "tokens_per_second": 25},
        },
    )
    frames = await read_until(ws, lambda f: f.get("type") == "message.delta")
    frames += await read_until(ws, lambda f: f.get("type") == "message.delta")
    assert await database_sync_to_async(count)(log) == 1  # the tool ran, its answer streams
    run = await holder()
    workers[run.worker].kill()
    frames += await read_until(ws, completed)
    assert any(f.get("type") == "run.retrying" for f in frames)
    assert any(f.get("status") == "reconnecting" for f in frames)
    assert not any(f.get("status") == "unresponsive" for f in frames)
    done = await finished(run.pk)
    assert done.status == RunStatus.COMPLETED and done.worker != run.worker
    assert (done.attempts, done.crashes) == (2, 1)
    assert await database_sync_to_async(count)(log) == 1  # not run twice
    reply = await Message.objects.aget(role="assistant")
    assert reply.content == REPLY
    assert reader_text(frames) == REPLY  # connected throughout: every word once
    late = await connect(server, session, store)
    replayed = await read_until(late, lambda f: f.get("type") == "live")
    events = [e for f in replayed if f.get("type") == "events" for e in f["events"]]
    assert reader_text(events + replayed) == REPLY  # from the log afterwards: the same
    for socket in (ws, late):
        await socket.close()


async def test_a_tool_cut_off_by_kill_9_is_reported_as_outcome_unknown_not_run_again(
    daphne, agent_worker, postgres, redis_url, tmp_path
):
    log = str(tmp_path / "calls.log")
    _server, workers, _session, _store, ws = await start(
        daphne,
        agent_worker,
        redis_url,
        {
            "AGENT": "tests.resume_agents.ToolThenTextAgent",
            "AGENT_OPTIONS": {"log": log, "reply": "after the tool", "hold": 30},
        },
    )
    await read_until(ws, lambda f: f.get("type") == "tool.updated")
    for _ in range(200):
        if await database_sync_to_async(count)(log) == 1:
            break
        await asyncio.sleep(0.05)
    run = await holder()
    workers[run.worker].kill()  # while the tool runs
    frames = await read_until(ws, completed)
    call = await MessagePart.objects.aget(type="tool_call")
    assert (call.state, call.error) == ("error", OUTCOME_UNKNOWN)
    assert await database_sync_to_async(count)(log) == 1
    assert reader_text(frames) == "after the tool"
    await ws.close()


async def test_sigterm_mid_answer_hands_the_run_back_and_nothing_is_reaped(
    daphne, agent_worker, postgres, redis_url
):
    _server, workers, _session, _store, ws = await start(
        daphne,
        agent_worker,
        redis_url,
        {
            "AGENT": "tests.resume_agents.SlowTextAgent",
            "AGENT_OPTIONS": {"reply": REPLY, "tokens_per_second": 20},
            "DRAIN_GRACE": 0.5,  # shorter than the answer: it is handed back
        },
    )
    frames = await read_until(ws, lambda f: f.get("type") == "message.delta")
    run = await holder()
    stopped = workers[run.worker].process
    stopped.send_signal(signal.SIGTERM)
    frames += await read_until(ws, completed)
    assert await asyncio.to_thread(stopped.wait, 20) == 0
    retry = next(f for f in frames if f.get("type") == "run.retrying")
    assert retry["data"]["reason"] == "handed_back"
    assert not any(f.get("status") == "unresponsive" for f in frames)
    done = await finished(run.pk)
    assert (done.status, done.crashes) == (RunStatus.COMPLETED, 0)
    assert done.worker != run.worker
    assert reader_text(frames) == REPLY
    assert (await Message.objects.aget(role="assistant")).content == REPLY
    await ws.close()


async def test_sigterm_lets_a_short_answer_finish_on_the_same_worker(
    daphne, agent_worker, postgres, redis_url
):
    _server, workers, _session, _store, ws = await start(
        daphne,
        agent_worker,
        redis_url,
        {
            "AGENT": "tests.resume_agents.SlowTextAgent",
            "AGENT_OPTIONS": {"reply": REPLY[:120], "tokens_per_second": 20},
            "DRAIN_GRACE": 30,
        },
    )
    frames = await read_until(ws, lambda f: f.get("type") == "message.delta")
    run = await holder()
    stopped = workers[run.worker].process
    stopped.send_signal(signal.SIGTERM)
    frames += await read_until(ws, completed)
    assert await asyncio.to_thread(stopped.wait, 30) == 0
    done = await finished(run.pk)
    assert (done.status, done.worker, done.attempts) == (RunStatus.COMPLETED, run.worker, 1)
    assert not any(f.get("type") == "run.retrying" for f in frames)
    assert reader_text(frames) == REPLY[:120]
    await ws.close()


async def test_two_workers_share_a_burst_of_runs_within_their_limit(
    daphne, agent_worker, postgres, redis_url
):
    env = server_env(
        redis_url=redis_url,
        ds_settings={
            **FAST_REAPING,
            "MAX_CONCURRENT_RUNS": 3,
            "AGENT": "tests.resume_agents.SlowTextAgent",
            "AGENT_OPTIONS": {"reply": REPLY, "tokens_per_second": 4},
        },
    )
    for name in ("alpha", "beta"):
        agent_worker(env, name)
    await asyncio.sleep(0.5)  # both have noted themselves as live
    for n in range(6):
        session, _ = await database_sync_to_async(anonymous_session)(f"visitor-{n}")
        customer = await database_sync_to_async(service.participant_for)(
            session.id, ParticipantKind.CUSTOMER
        )
        await service.apost_message(session.id, author=customer, content="hi")
    for _ in range(400):
        if await AgentRun.objects.filter(status=RunStatus.RUNNING).acount() == 6:
            break
        await asyncio.sleep(0.05)
    held = {
        name: await AgentRun.objects.filter(worker=name, status=RunStatus.RUNNING).acount()
        for name in ("alpha", "beta")
    }
    assert held == {"alpha": 3, "beta": 3}


async def test_sigterm_of_an_embedded_server_hands_its_run_to_the_next_server(
    daphne, postgres, redis_url
):
    env = server_env(
        redis_url=redis_url,
        ds_settings={
            **FAST_REAPING,
            "RUNNER": "embedded",
            "AGENT": "tests.resume_agents.SlowTextAgent",
            "AGENT_OPTIONS": {"reply": REPLY, "tokens_per_second": 20},
            "DRAIN_GRACE": 0.5,
        },
    )
    first = daphne(env)
    session, store = await database_sync_to_async(anonymous_session)()
    ws = await connect(first, session, store)
    await read_until(ws, lambda f: f.get("type") == "live")
    await ws.send(json.dumps({"type": "message.send", "content": "hello", "client_id": "c1"}))
    await read_until(ws, lambda f: f.get("type") == "message.delta")
    run = await holder()
    first.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(first.process.wait, 20) is not None

    def handed_back() -> bool:
        return AgentRun.objects.filter(pk=run.pk, status=RunStatus.PENDING).exists()

    assert await database_sync_to_async(handed_back)()  # pending, not left to its lease
    second = daphne(env)  # its worker picks the run up at once
    late = await connect(second, session, store)
    frames = await read_until(late, completed)
    done = await finished(run.pk)
    assert (done.status, done.crashes, done.attempts) == (RunStatus.COMPLETED, 0, 2)
    events = [e for f in frames if f.get("type") == "events" for e in f["events"]]
    assert reader_text(events + frames) == REPLY
    assert (await Message.objects.aget(role="assistant")).content == REPLY
    for socket in (ws, late):
        await socket.close()

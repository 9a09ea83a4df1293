"""The agent's status re-read after a log event that may change it: once per session and
process, and beside the delivery, never in its way."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from channels.db import database_sync_to_async
from django.db import close_old_connections

from durable_sessions import service
from durable_sessions.delivery.agent_reads import agent_reads
from durable_sessions.delivery.publish import collecting, publish_now
from durable_sessions.models import ParticipantKind
from durable_sessions.service import runs
from tests.factories import anonymous_session, open_ws, recv

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async


def counting(monkeypatch, delay: float = 0.0) -> list[float]:
    """Count (and optionally slow down) the reads of the agent's state."""
    calls: list[float] = []
    original = runs.agent_state

    def agent_state(session_id):
        calls.append(time.monotonic())
        time.sleep(delay)
        return original(session_id)

    monkeypatch.setattr(runs, "agent_state", agent_state)
    return calls


async def test_the_devices_of_a_session_share_one_read_per_event(monkeypatch):
    session, store = await db(anonymous_session)()
    devices = [(await open_ws(session.id, store=store))[0] for _ in range(3)]
    reply = await service.astart_assistant_message(session.id)
    for comm in devices:
        assert (await recv(comm))["type"] == "message.created"
    calls = counting(monkeypatch, delay=0.3)
    last = await service.afinish_assistant_message(reply)
    for comm in devices:
        assert (await recv(comm))["seq"] == last
    # Reads of their own would take 0.3 s each, one after the other on the database thread.
    for _ in range(150):
        await asyncio.sleep(0.02)
        if calls and time.monotonic() - calls[-1] > 1.0:
            break
    assert len(calls) == 1
    assert not len(agent_reads)  # nothing kept once it was read
    for comm in devices:
        await comm.disconnect()


async def test_a_pending_status_read_does_not_hold_back_the_next_events(monkeypatch):
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    reply = await service.astart_assistant_message(session.id)
    assert (await recv(comm))["type"] == "message.created"
    release = threading.Event()
    original = runs.agent_state

    def slow_agent_state(session_id):
        release.wait(10)
        return original(session_id)

    monkeypatch.setattr(runs, "agent_state", slow_agent_state)
    try:
        ended = await service.afinish_assistant_message(reply)
        assert (await recv(comm))["seq"] == ended
        # The database thread now waits in the read: write the next event on another.
        customer = await asyncio.to_thread(_participant, session.id)
        posted, wakeups = await asyncio.to_thread(_post, session.id, customer)
        await publish_now(wakeups)
        frame = await recv(comm, wait=3)
        assert frame["type"] == "message.created" and frame["seq"] == posted
    finally:
        release.set()
    await comm.disconnect()


def _participant(session_id):
    try:
        return service.participant_for(session_id, ParticipantKind.CUSTOMER)
    finally:
        close_old_connections()


def _post(session_id, customer):
    try:
        result, wakeups = collecting(
            service.post_message, session_id, author=customer, content="next", client_id="n1"
        )
        return result.seq, wakeups
    finally:
        close_old_connections()


async def test_no_read_when_the_status_came_with_the_events(monkeypatch):
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    customer = await db(service.participant_for)(session.id, ParticipantKind.CUSTOMER)
    await service.apost_message(session.id, author=customer, content="hi", client_id="c1")
    reply = await service.astart_assistant_message(session.id)
    while (await recv(comm)).get("seq") != reply.seq:
        pass
    calls = counting(monkeypatch)
    cancelled = await service.acancel_reply(session.id)
    assert cancelled  # the reply's end is in the log, with the agent's status beside it
    while (await recv(comm)).get("seq") != cancelled[-1]:
        pass
    status = await comm.receive_json_from(timeout=5)  # sent after the events it came with
    assert status["type"] == "agent.status" and status["status"] == "idle"
    await asyncio.sleep(0.3)  # a read would have been started by now
    assert calls == []
    await comm.disconnect()

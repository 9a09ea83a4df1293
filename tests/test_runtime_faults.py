"""A database that goes away for a moment pauses a reply; it does not fail it, double it,
or show the customer a driver's error text."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.db import OperationalError

from durable_sessions import service
from durable_sessions.models import AgentRun, Message, RunStatus
from durable_sessions.service import transient
from tests.factories import anonymous_session, open_ws
from tests.test_runtime import (
    REPLY,
    deltas,
    frames_until,
    is_end,
    running_worker,
    runtime_settings,
    send,
    wait_for_run,
)

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(transient, "RETRY_DELAYS", (0.01, 0.01, 0.01, 0.01, 0.01))


async def test_appends_that_lost_their_connection_are_retried_once_each(settings, monkeypatch):
    runtime_settings(settings, FLUSH_MAX_CHARS=20)
    real = service.delta_writer.append
    calls = 0

    async def flaky(session_id, message_id, text, **part):
        nonlocal calls
        calls += 1
        if calls == 2:  # committed, but the connection broke before the commit was confirmed
            await real(session_id, message_id, text, **part)
            raise OperationalError("terminating connection due to administrator command")
        if calls in (4, 5):  # refused twice before anything was written
            raise OperationalError("connection refused")
        return await real(session_id, message_id, text, **part)

    monkeypatch.setattr(service.delta_writer, "append", flaky)
    async with running_worker("w"):
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await send(comm, "hello", "c1")
        frames = await frames_until(comm, is_end)
        assert frames[-1]["type"] == "message.completed"
        assert deltas(frames) == REPLY  # nothing lost, nothing twice
        run = await wait_for_run(RunStatus.COMPLETED)
        reply = await Message.objects.aget(pk=run.message_id)
        assert (reply.content, reply.state) == (REPLY, "complete")
        await comm.disconnect()


async def test_a_finish_whose_commit_was_not_confirmed_is_not_repeated(settings, monkeypatch):
    runtime_settings(settings)
    real = service.afinish_assistant_message
    calls = 0

    async def flaky(message):
        nonlocal calls
        calls += 1
        seq = await real(message)
        if calls == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return seq

    monkeypatch.setattr(service, "afinish_assistant_message", flaky)
    async with running_worker("w"):
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await send(comm, "hello", "c1")
        frames = await frames_until(comm, is_end)
        assert frames[-1]["type"] == "message.completed"
        run = await wait_for_run(RunStatus.COMPLETED)
        assert run.error == ""
        await comm.disconnect()


class LeakyAgent:
    """Fails with a library's error text that must not reach the customer."""

    def __init__(self, **options):
        pass

    async def stream(self, turn):
        yield "Let me look"
        raise RuntimeError("connection to server at 10.0.0.5, port 5432 failed: password")


async def test_customers_never_read_a_library_error(settings):
    runtime_settings(settings, AGENT="tests.test_runtime_faults.LeakyAgent")
    async with running_worker("w"):
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await send(comm, "hello", "c1")
        frames = await frames_until(comm, is_end)
        failed = frames[-1]
        assert failed["type"] == "message.failed"
        assert failed["data"]["error"] == "the agent failed"
        run = await wait_for_run(RunStatus.FAILED)
        assert "10.0.0.5" in run.error  # the operator's record keeps the detail
        reply = await Message.objects.aget(pk=run.message_id)
        assert reply.content == "Let me look"
        assert not await AgentRun.objects.filter(status=RunStatus.RUNNING).aexists()
        await comm.disconnect()

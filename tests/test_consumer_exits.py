"""Every way a websocket consumer ends leaves nothing behind, and a server-side failure on
a client frame is an ``error`` frame, not a closed connection."""

from __future__ import annotations

import asyncio
import logging

import pytest
from channels.db import database_sync_to_async
from django.db import OperationalError

from durable_sessions import consumers, service
from durable_sessions.delivery import presence
from durable_sessions.delivery.resync import registry
from durable_sessions.models import Message
from tests.factories import anonymous_session, communicator, open_ws, recv

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async


class Escape(BaseException):
    """Escapes every ``except Exception``, as a bug in a handler could."""


async def present_in(session_id) -> list[presence.Entry]:
    room = str(session_id)
    return (await presence.keeper.store.read([room]))[room]


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (OperationalError("terminating connection due to administrator command"), "unavailable"),
        (RuntimeError("boom in the service"), "internal_error"),
    ],
)
async def test_a_failure_in_the_service_answers_an_error_frame_and_keeps_the_socket(
    monkeypatch, caplog, failure, code
):
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)

    async def broken(*args, **kwargs):
        raise failure

    monkeypatch.setattr(service, "apost_message", broken)
    with caplog.at_level(logging.INFO):
        await comm.send_json_to(
            {"type": "message.send", "content": "hi", "client_id": "c1", "ref": 9}
        )
        error = await recv(comm)
    assert error["type"] == "error" and error["code"] == code and error["ref"] == 9
    assert "terminating" not in error["message"] and "boom" not in error["message"]
    assert error["incident"]
    # One line in the log, naming the incident; no traceback.
    failures = [r for r in caplog.records if error["incident"] in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is None
    monkeypatch.undo()
    await comm.send_json_to({"type": "ping", "ref": "p"})
    assert (await recv(comm)) == {"type": "pong", "ref": "p"}
    await comm.send_json_to({"type": "message.send", "content": "hi", "client_id": "c1"})
    assert (await recv(comm))["type"] in ("ack", "message.created")
    await comm.disconnect()


async def test_a_consumer_that_crashes_in_connect_leaves_no_presence_entry(monkeypatch, caplog):
    session, store = await db(anonymous_session)()

    def broken_snapshot(self, opened, after):
        raise RuntimeError("the snapshot could not be built")

    monkeypatch.setattr(consumers.SessionConsumer, "_snapshot", broken_snapshot)
    comm = communicator(session.id, store=store)
    with caplog.at_level(logging.INFO):
        connected, _ = await comm.connect()
        assert connected  # accepted so that the close code reaches the client
        closed = await comm.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": consumers.CLOSE_SERVER_ERROR}
    for _ in range(100):  # released right after the close frame went out
        if not await present_in(session.id):
            break
        await asyncio.sleep(0.02)
    assert await present_in(session.id) == []
    assert str(session.id) not in presence.keeper._local
    assert not [r for r in caplog.records if r.exc_info]
    await comm.disconnect()
    assert len(registry) == 0


async def test_an_exception_escaping_the_consumer_still_releases_presence(monkeypatch):
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    assert len(await present_in(session.id)) == 1

    async def escaping(self, text_data=None, bytes_data=None):
        raise Escape  # not an Exception: nothing in the consumer catches it

    monkeypatch.setattr(consumers.SessionConsumer, "receive", escaping)
    await comm.send_json_to({"type": "ping"})
    with pytest.raises(Escape):
        for _ in range(20):  # frames already sent (presence) come first
            await comm.receive_output(timeout=5)
    assert await present_in(session.id) == []
    assert str(session.id) not in presence.keeper._local
    assert len(registry) == 0


async def test_sends_to_a_closed_connection_are_dropped_quietly(monkeypatch, caplog):
    """As Daphne does when the client closed during the replay: the send raises."""
    session, store = await db(anonymous_session)()
    for i in range(5):
        await service.apost_message(
            session.id,
            author=await db(service.participant_for)(session.id, "customer"),
            content=f"m{i}",
            client_id=f"c{i}",
        )
    sent = 0
    real_send = consumers.SessionConsumer.send

    async def closing_send(self, text_data=None, bytes_data=None, close=False):
        nonlocal sent
        sent += 1
        if sent > 2:
            raise Exception("Attempt to send on a closed protocol")
        await real_send(self, text_data=text_data, bytes_data=bytes_data, close=close)

    monkeypatch.setattr(consumers.SessionConsumer, "send", closing_send)
    comm = communicator(session.id, store=store)
    with caplog.at_level(logging.DEBUG):
        connected, _ = await comm.connect()
        assert connected
        await asyncio.sleep(0.3)
        await comm.disconnect()
    assert sent == 3  # the replay stopped at the first failed send
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
    assert await present_in(session.id) == []
    assert len(registry) == 0
    assert await Message.objects.filter(session_id=session.id).acount() == 5


async def test_closing_does_not_wait_for_an_unreachable_layer(monkeypatch, caplog):
    """Daphne kills a consumer that takes 10 s to close: every cleanup step is bounded."""
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    monkeypatch.setattr(consumers, "CLEANUP_SECONDS", 0.2)
    hang = asyncio.Event()

    async def unreachable(*args, **kwargs):
        await hang.wait()  # Redis away: the call waits for its socket timeout

    from channels.layers import get_channel_layer

    monkeypatch.setattr(get_channel_layer(), "group_discard", unreachable)
    monkeypatch.setattr(presence.keeper, "leave", unreachable)
    async with asyncio.timeout(5):
        await comm.disconnect()
    assert "cleanup of a closed connection failed: TimeoutError" in caplog.text
    assert not registry._by_session.get(session.id)

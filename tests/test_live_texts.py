"""Live events are encoded once per process for all connections of a session, and every
client still receives exactly the frame it would have had otherwise."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from durable_sessions import service, wire
from durable_sessions.delivery import live_texts as live_texts_module
from durable_sessions.delivery.live_texts import LiveTexts
from tests.factories import anonymous_session, open_ws, stream_text

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async


async def test_the_devices_of_a_session_get_one_encoding_of_each_event(monkeypatch):
    session, store = await db(anonymous_session)()
    devices = [(await open_ws(session.id, store=store))[0] for _ in range(3)]
    reply = await service.astart_assistant_message(session.id)
    texts: dict[int, list[str]] = {}
    encoded: list[int] = []
    real_dumps = wire.dumps

    def dumps(frame):
        if frame.get("type") == "message.delta":
            encoded.append(frame["seq"])
        return real_dumps(frame)

    monkeypatch.setattr(wire, "dumps", dumps)
    seq = await stream_text(reply, "héllo \u2028 wörld")
    for index, comm in enumerate(devices):
        while True:
            text = await comm.receive_from(timeout=5)
            if '"message.delta"' in text:
                texts[index] = text
                break
    assert encoded == [seq]
    assert len(set(texts.values())) == 1
    received = json.loads(texts[0])
    assert received["seq"] == seq and received["data"]["text"] == "héllo \u2028 wörld"
    assert texts[0] == real_dumps(received)  # the same text as an encoding of its own
    for comm in devices:
        await comm.disconnect()


async def test_an_equal_frame_is_served_and_a_different_one_encoded():
    texts = LiveTexts()
    first = {"type": "message.delta", "seq": 5, "at": "t", "data": {"text": "a"}}
    same = {"type": "message.delta", "seq": 5, "at": "t", "data": {"text": "a"}}
    other = {"type": "message.snapshot", "seq": 5, "at": "t", "data": {"text": "ab"}}
    assert texts.text("g", first) == wire.dumps(first)
    assert texts.text("g", same) is texts.text("g", first)
    assert texts.text("g", other) == wire.dumps(other)
    assert texts.text("h", first) == wire.dumps(first)


async def test_texts_are_not_kept_once_the_session_is_quiet(monkeypatch):
    monkeypatch.setattr(live_texts_module, "KEEP_SECONDS", 0.05)
    texts = LiveTexts()
    texts.text("g", {"type": "message.delta", "seq": 1})
    assert len(texts) == 1
    await asyncio.sleep(0.2)
    assert len(texts) == 0

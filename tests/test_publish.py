"""Sending wake-ups: in order, pipelined on the Redis pub/sub layer, after commit only."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from channels.layers import channel_layers, get_channel_layer

from durable_sessions.delivery.layers import GROUP_SEND_MANY, RedisPubSubLayer
from durable_sessions.delivery.publish import Wakeup, publish_now, session_wakeup


def frames(*seqs: int) -> list[dict]:
    return [{"type": "message.delta", "seq": s, "at": "x", "data": {}} for s in seqs]


async def receive_seqs(layer, channel: str, count: int) -> list[tuple[str, int]]:
    got = []
    while len(got) < count:
        message = await asyncio.wait_for(layer.receive(channel), 5)
        got += [(message["session"], f["seq"]) for f in message["events"]]
    return got


async def send_and_check(layer) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    channel = await layer.new_channel()
    wakeups = []
    for seq in range(1, 6):
        for session in (a, b):
            wakeup = session_wakeup(session, frames(seq))
            wakeups.append(Wakeup(wakeup.target, {**wakeup.message, "session": session.hex}))
    for wakeup in wakeups[:2]:  # the groups of sessions a and b
        await layer.group_add(wakeup.target, channel)
    await publish_now(wakeups)
    got = await receive_seqs(layer, channel, 10)
    for session in (a, b):
        assert [seq for s, seq in got if s == session.hex] == [1, 2, 3, 4, 5]


async def test_wakeups_arrive_in_order_through_redis_pubsub_in_one_pipeline(
    settings, redis_url, monkeypatch
):
    batches = []
    original = RedisPubSubLayer.group_send_many

    async def counting(self, messages):
        batches.append(len(messages))
        await original(self, messages)

    monkeypatch.setattr(RedisPubSubLayer, "group_send_many", counting)
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "durable_sessions.delivery.layers.RedisPubSubLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    channel_layers.backends.clear()
    layer = get_channel_layer()
    try:
        assert GROUP_SEND_MANY in layer.extensions
        await send_and_check(layer)
        assert batches == [10]  # one call (one pipeline) for the ten wake-ups
    finally:
        await layer.flush()
        channel_layers.backends.clear()


async def test_a_plain_layer_gets_one_send_per_wakeup(settings, redis_url):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    channel_layers.backends.clear()
    layer = get_channel_layer()
    try:
        assert GROUP_SEND_MANY not in getattr(layer, "extensions", ())
        await send_and_check(layer)
    finally:
        await layer.flush()
        channel_layers.backends.clear()


async def test_wakeups_arrive_in_order_through_the_in_memory_layer():
    layer = get_channel_layer()
    assert GROUP_SEND_MANY in layer.extensions
    await send_and_check(layer)


@pytest.mark.django_db(transaction=True)
def test_a_wakeup_waits_for_the_commit(monkeypatch):
    from django.db import transaction

    from durable_sessions.delivery import publish

    sent = []
    monkeypatch.setattr(publish, "_send_committed", lambda wakeups: sent.append(wakeups))
    with transaction.atomic():
        publish.publish_on_commit([session_wakeup(uuid.uuid4(), frames(1))])
        assert sent == []
    assert len(sent) == 1


class BrokenLayer:
    """A channel layer whose Redis is down."""

    extensions = ["groups"]

    def __init__(self) -> None:
        self.broken = True
        self.sent = 0

    async def group_send(self, group, message):
        if self.broken:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.sent += 1

    async def send(self, channel, message):
        await self.group_send(channel, message)


async def test_an_outage_is_logged_once_not_once_per_wakeup(monkeypatch, caplog):
    from durable_sessions.delivery import publish

    layer = BrokenLayer()
    monkeypatch.setattr(publish, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(publish, "health", publish.LayerHealth())
    for seq in range(100):
        await publish_now([session_wakeup(uuid.uuid4(), frames(seq)) for _ in range(3)])
    layer.broken = False
    await publish_now([session_wakeup(uuid.uuid4(), frames(1))])
    records = [r for r in caplog.records if r.name == "durable_sessions.delivery.publish"]
    assert [r.getMessage().split(" (")[0] for r in records] == [
        "channel layer unavailable",
        "channel layer available again",
    ]
    assert "300 wake-ups were lost" in records[1].getMessage()
    assert all(r.exc_info is None for r in records) and layer.sent == 1

"""Sending wake-ups: in order, pipelined on channels-redis' pub/sub layer."""

from __future__ import annotations

import asyncio
import uuid

from channels.layers import channel_layers, get_channel_layer

from durable_sessions.delivery import publish
from durable_sessions.delivery.publish import asend_all, events_wakeup


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
            target, is_group, message = events_wakeup(session, frames(seq))
            wakeups.append((target, is_group, {**message, "session": session.hex}))
    for target, _, _ in wakeups[:2]:  # the groups of sessions a and b
        await layer.group_add(target, channel)
    await asend_all(wakeups)
    got = await receive_seqs(layer, channel, 10)
    for session in (a, b):
        assert [seq for s, seq in got if s == session.hex] == [1, 2, 3, 4, 5]


async def test_wakeups_arrive_in_order_through_redis_pubsub(settings, redis_url, monkeypatch):
    pipelined = []
    original = publish._publish_pipelined

    async def counting(shards):
        pipelined.append(sum(len(items) for items in shards.values()))
        await original(shards)

    monkeypatch.setattr(publish, "_publish_pipelined", counting)
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    channel_layers.backends.clear()
    layer = get_channel_layer()
    try:
        await send_and_check(layer)
        assert pipelined == [10]  # one pipeline for the ten wake-ups
    finally:
        await layer.flush()
        channel_layers.backends.clear()


async def test_wakeups_arrive_in_order_through_the_in_memory_layer():
    await send_and_check(get_channel_layer())

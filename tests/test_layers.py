"""The one-process channel layer: Channels' in-memory semantics, cheaper sweeps."""

from __future__ import annotations

import asyncio

import pytest

from durable_sessions.delivery import layers
from durable_sessions.delivery.layers import LocalChannelLayer

# Neither the database nor a channel layer backend: the PostgreSQL + Redis pass skips it.
pytestmark = pytest.mark.neutral


async def test_a_group_message_reaches_every_member_as_its_own_copy():
    layer = LocalChannelLayer()
    a, b, outsider = [await layer.new_channel() for _ in range(3)]
    await layer.group_add("g", a)
    await layer.group_add("g", b)
    message = {"type": "session.events", "events": [{"seq": 1}]}
    await layer.group_send("g", message)
    got_a = await asyncio.wait_for(layer.receive(a), 1)
    got_b = await asyncio.wait_for(layer.receive(b), 1)
    assert got_a == got_b == message
    got_a["events"].append({"seq": 2})
    assert got_b["events"] == [{"seq": 1}] and message["events"] == [{"seq": 1}]
    assert outsider not in layer.channels
    await layer.group_discard("g", b)
    await layer.group_send("g", {"type": "x"})
    assert (await asyncio.wait_for(layer.receive(a), 1))["type"] == "x"
    assert b not in layer.channels


async def test_a_full_channel_misses_group_messages_without_failing_the_send():
    layer = LocalChannelLayer(capacity=2)
    full, fine = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", full)
    await layer.group_add("g", fine)
    for n in range(3):
        await layer.group_send("g", {"type": "m", "n": n})
    assert layer.channels[full].qsize() == 2
    assert [(await layer.receive(full))["n"] for _ in range(2)] == [0, 1]


async def test_expired_messages_and_memberships_still_go(monkeypatch):
    monkeypatch.setattr(layers, "CLEAN_INTERVAL", 0.05)
    layer = LocalChannelLayer(expiry=0.01)
    gone, alive = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", gone)
    await layer.send(gone, {"type": "stale"})
    await asyncio.sleep(0.1)
    await layer.group_add("g", alive)
    layer._next_clean = 0.0  # the next send sweeps
    await layer.group_send("other", {"type": "poke"})
    assert gone not in layer.channels
    assert gone not in layer.groups["g"] and alive in layer.groups["g"]


async def test_sweeps_are_throttled(monkeypatch):
    layer = LocalChannelLayer()
    calls = []
    original = layers.InMemoryChannelLayer._clean_expired

    def counting(self):
        calls.append(1)
        original(self)

    monkeypatch.setattr(layers.InMemoryChannelLayer, "_clean_expired", counting)
    for _ in range(50):
        await layer.group_send("g", {"type": "m"})
    assert len(calls) == 1

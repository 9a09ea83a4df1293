"""Presence pushes of one session are coalesced: N changes at once cost one push, not N."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from channels.layers import get_channel_layer

from durable_sessions.delivery import presence
from durable_sessions.delivery.groups import session_group

# Neither the database nor a channel layer backend: the PostgreSQL + Redis pass skips it.
pytestmark = pytest.mark.neutral

ROOM = "3f1c7a52-0000-4000-8000-000000000001"
N = 30


class Member:
    """A connection as the keeper sees it (the consumer, without a socket)."""

    def __init__(self, index: int) -> None:
        self.presence_room = ROOM
        self.presence_entry = presence.Entry(f"conn-{index}", presence.CUSTOMER, None, "")

    async def presence_changed(self, frames: presence.Frames) -> None:
        pass


class Pushes(list):
    """The presence pushes sent to the session's group, each as the entries it carried."""

    next_push: Any


@pytest.fixture
def pushes(monkeypatch) -> Pushes:
    layer = get_channel_layer()
    sent = Pushes()
    arrived = asyncio.Event()
    original = layer.group_send

    async def group_send(group: str, message: dict[str, Any]) -> None:
        if group == session_group(ROOM) and message["type"] == presence.PRESENCE_MESSAGE_TYPE:
            sent.append(presence.load_entries(message["entries"]))
            arrived.set()
        await original(group, message)

    monkeypatch.setattr(layer, "group_send", group_send)

    async def next_push(count: int) -> list[presence.Entry]:
        while len(sent) < count:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 5)
        return sent[count - 1]

    sent.next_push = next_push
    return sent


@pytest.fixture
def keeper(monkeypatch) -> presence.PresenceKeeper:
    keeper = presence.PresenceKeeper()
    monkeypatch.setattr(keeper, "_ensure_task", lambda: None)  # no sweeps: pushes only
    return keeper


async def test_many_joins_within_the_interval_make_one_push_with_the_last_state(
    ds_config, pushes, keeper
):
    ds_config(PRESENCE_COALESCE_MS=500)
    members = [Member(i) for i in range(N)]
    for member in members:
        entries = await keeper.join(member)
        assert member.presence_entry.conn in {e.conn for e in entries}  # its snapshot
    pushed = await pushes.next_push(1)
    assert len(pushed) == N  # every join, in one push
    await keeper.leave(members[0])
    await keeper.typing(members[1], True)
    pushed = await pushes.next_push(2)
    assert len(pushes) == 2
    assert len(pushed) == N - 1  # the leave and the typing, together
    assert sum(e.typing_until > time.time() for e in pushed) == 1


async def test_without_coalescing_every_change_is_pushed_at_once(ds_config, pushes, keeper):
    ds_config(PRESENCE_COALESCE_MS=0)
    for member in [Member(i) for i in range(5)]:
        await keeper.join(member)
    assert [len(entries) for entries in pushes] == [1, 2, 3, 4, 5]


async def test_a_failed_push_is_logged_and_the_next_change_pushes_again(caplog):
    pushes = presence.CoalescedPushes()
    failed, pushed = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    async def fail(room: str) -> None:
        calls.append("fail")
        failed.set()
        raise ConnectionError("the store is down")

    async def succeed(room: str) -> None:
        calls.append("push")
        pushed.set()

    pushes.schedule(ROOM, 0.01, fail)
    pushes.schedule(ROOM, 0.01, fail)  # rides along with the pending one
    await asyncio.wait_for(failed.wait(), 5)
    pushes.schedule(ROOM, 0.01, succeed)
    await asyncio.wait_for(pushed.wait(), 5)
    assert calls == ["fail", "push"]
    assert "presence push failed" in caplog.text

"""The per-process resync check: lost wake-ups are made good, in-flight events left alone."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from durable_sessions.delivery import resync
from durable_sessions.delivery.resync import LiveRegistry

# Neither the database nor a channel layer backend: the PostgreSQL + Redis pass skips it.
pytestmark = pytest.mark.neutral


class Follower:
    def __init__(self, last_sent: int) -> None:
        self.last_sent = last_sent
        self.resynced: list[int] = []

    async def resync(self, last_seq: int) -> None:
        self.resynced.append(last_seq)
        self.last_sent = last_seq


async def test_only_events_missing_for_a_whole_interval_are_read_again(monkeypatch):
    session = uuid.uuid4()
    committed = {session: 10}
    monkeypatch.setattr(resync, "latest_seqs", lambda ids: {s: committed[s] for s in ids})
    registry = LiveRegistry()
    on_time, stuck = Follower(8), Follower(8)  # two events on their way to both
    registry._by_session[session] = {on_time, stuck}
    assert await registry.check_once() == 0  # nothing was known at a previous check
    on_time.last_sent = 10  # its wake-up came; stuck's was lost
    committed[session] = 12  # and the stream goes on
    assert await registry.check_once() == 1
    await asyncio.sleep(0)
    assert stuck.resynced == [12] and on_time.resynced == []


async def test_a_session_new_to_the_registry_waits_for_the_next_check(monkeypatch):
    first, second = uuid.uuid4(), uuid.uuid4()
    monkeypatch.setattr(resync, "latest_seqs", lambda ids: dict.fromkeys(ids, 5))
    registry = LiveRegistry()
    registry._by_session[first] = {Follower(5)}
    await registry.check_once()
    late = Follower(0)
    registry._by_session[second] = {late}
    assert await registry.check_once() == 0
    assert await registry.check_once() == 1

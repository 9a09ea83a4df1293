"""Presence while its store is down, and after the store comes back having lost everything
(a Redis restart keeps nothing): typing still times out, and nobody present shows offline."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from durable_sessions.delivery import presence

ROOM = "5b0d3c11-0000-4000-8000-000000000002"


class FlakyStore(presence.MemoryStore):
    """One store shared by two keepers (two processes), which can go down or be wiped."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379")

    async def put(self, session: str, entries: list[presence.Entry]) -> None:
        self._check()
        await super().put(session, entries)

    async def remove(self, session: str, conn: str) -> None:
        self._check()
        await super().remove(session, conn)

    async def read(self, sessions: list[str]) -> dict[str, list[presence.Entry]]:
        self._check()
        return await super().read(sessions)

    def wipe(self) -> None:
        self._data.clear()


class Member:
    def __init__(self, conn: str, kind: str) -> None:
        self.presence_room = ROOM
        self.presence_entry = presence.Entry(conn, kind, 7 if kind == "operator" else None, "")
        self.frames: list[dict[str, Any]] = []

    async def presence_changed(self, frames: presence.Frames) -> None:
        self.frames.append(frames.for_viewer(operator=True))


@pytest.fixture
def store() -> FlakyStore:
    return FlakyStore()


def make_keeper(monkeypatch, store: FlakyStore) -> presence.PresenceKeeper:
    keeper = presence.PresenceKeeper()
    keeper._store = store
    monkeypatch.setattr(keeper, "_ensure_task", lambda: None)  # sweeps are called by hand
    return keeper


async def test_typing_ends_on_time_while_the_store_is_down(ds_config, monkeypatch, store, caplog):
    ds_config(TYPING_TIMEOUT=0.3, PRESENCE_COALESCE_MS=0)
    keeper = make_keeper(monkeypatch, store)
    customer, operator = Member("c", presence.CUSTOMER), Member("o", presence.OPERATOR)
    await keeper.join(customer)
    await keeper.join(operator)
    await keeper.typing(customer, True)
    await keeper.sweep_once()
    assert operator.frames[-1]["customer"]["typing"] is True

    store.down = True
    caplog.set_level(logging.WARNING, logger="durable_sessions")
    await asyncio.sleep(0.4)
    for _ in range(3):
        await keeper.sweep_once()
    shown = operator.frames[-1]["customer"]
    assert shown["typing"] is False  # the timeout holds without the store
    assert shown["online"] is True  # nobody can tell who left: the last known stays
    assert caplog.text.count("presence store unreachable") == 1  # one line per outage


async def test_nobody_shows_offline_when_the_store_comes_back_empty(ds_config, monkeypatch, store):
    ds_config(PRESENCE_COALESCE_MS=0, PRESENCE_HEARTBEAT=15.0, PRESENCE_SWEEP=2.0)
    console_process = make_keeper(monkeypatch, store)
    customer_process = make_keeper(monkeypatch, store)
    operator, customer = Member("o", presence.OPERATOR), Member("c", presence.CUSTOMER)
    await console_process.join(operator)
    await customer_process.join(customer)
    await console_process.sweep_once()
    await customer_process.sweep_once()
    assert operator.frames[-1]["customer"]["online"] is True

    store.down = True
    await console_process.sweep_once()
    await customer_process.sweep_once()
    store.down = False
    store.wipe()  # the restarted store lost every entry
    # The console's process sweeps first: the customer's entry is missing, not gone.
    await console_process.sweep_once()
    assert operator.frames[-1]["customer"]["online"] is True
    assert [e.conn for e in (await store.read([ROOM]))[ROOM]] == ["o"]  # its own, put back
    await customer_process.sweep_once()  # puts the customer back: no heartbeat to wait for
    assert sorted(e.conn for e in (await store.read([ROOM]))[ROOM]) == ["c", "o"]
    await console_process.sweep_once()
    assert all(frame["customer"]["online"] for frame in operator.frames)
    assert all(frame["operators"] for frame in customer.frames)


async def test_an_entry_gone_without_a_leave_disappears_after_two_sweeps(
    ds_config, monkeypatch, store
):
    ds_config(PRESENCE_COALESCE_MS=0, PRESENCE_SWEEP=0.1)
    monkeypatch.setattr(presence, "MISSING_GRACE", 0.0)  # two sweeps only
    console_process = make_keeper(monkeypatch, store)
    operator = Member("o", presence.OPERATOR)
    await console_process.join(operator)
    ghost = presence.Entry("c", presence.CUSTOMER, None, "")
    ghost.expires = 1e12
    await store.put(ROOM, [ghost])
    await console_process.sweep_once()
    assert operator.frames[-1]["customer"]["online"] is True
    await store.remove(ROOM, "c")  # its process died and its push never came
    await console_process.sweep_once()
    assert operator.frames[-1]["customer"]["online"] is True  # may be a lost store write
    await asyncio.sleep(0.25)
    await console_process.sweep_once()
    assert operator.frames[-1]["customer"]["online"] is False


async def test_a_pushed_leave_is_shown_at_once_and_not_kept(ds_config, monkeypatch, store):
    ds_config(PRESENCE_COALESCE_MS=0, PRESENCE_SWEEP=2.0)
    console_process = make_keeper(monkeypatch, store)
    customer_process = make_keeper(monkeypatch, store)
    operator, customer = Member("o", presence.OPERATOR), Member("c", presence.CUSTOMER)
    await console_process.join(operator)
    await customer_process.join(customer)
    await console_process.sweep_once()
    await customer_process.leave(customer)
    # The leave's push reaches the console's process (the consumer hands it over).
    pushed = presence.dump_entries((await store.read([ROOM]))[ROOM])
    console_process.pushed(ROOM, presence.load_entries(pushed))
    await console_process.sweep_once()
    assert operator.frames[-1]["customer"]["online"] is False


async def test_a_push_that_lists_everyone_keeps_what_the_store_lost(ds_config, monkeypatch, store):
    """A push carries no connection names, only tags: it removes who left from what is
    known, and keeps everyone it lists, even when the store then comes back empty."""
    ds_config(PRESENCE_COALESCE_MS=0, PRESENCE_SWEEP=2.0)
    console_process = make_keeper(monkeypatch, store)
    customer_process = make_keeper(monkeypatch, store)
    operator, customer = Member("o", presence.OPERATOR), Member("c", presence.CUSTOMER)
    await console_process.join(operator)
    await customer_process.join(customer)
    await console_process.sweep_once()
    pushed = presence.dump_entries((await store.read([ROOM]))[ROOM])
    assert '"c"' not in pushed  # connection names stay in their process
    console_process.pushed(ROOM, presence.load_entries(pushed))  # e.g. typing started
    store.down = True
    await console_process.sweep_once()
    store.down = False
    store.wipe()
    await console_process.sweep_once()
    assert all(frame["customer"]["online"] for frame in operator.frames)

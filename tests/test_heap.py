"""Settled connections are frozen out of full garbage collections, and what closed ones
left in reference cycles is still collected once enough of them have closed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from durable_sessions.delivery import heap
from durable_sessions.delivery.heap import HeapKeeper
from tests.factories import anonymous_session, open_ws


class Cycle:
    """Stands for a connection's objects: they refer to each other."""

    def __init__(self) -> None:
        self.me = self


def collected_normally(obj: object) -> bool:
    """Whether ``obj`` is in a generation the collector walks (not frozen)."""
    return any(o is obj for o in gc.get_objects())


@pytest.fixture
def collector() -> Iterator[None]:
    """The collector on and nothing frozen, as before the test, whatever it did."""
    was_enabled = gc.isenabled()
    gc.enable()
    gc.unfreeze()
    yield
    gc.unfreeze()
    if not was_enabled:
        gc.disable()


@pytest.mark.neutral
def test_connections_are_frozen_once_enough_have_opened(collector):
    keeper = HeapKeeper(freeze_after=3, min_closed=2)
    keeper.live = keeper.opened_since_freeze = 2
    state = Cycle()
    assert keeper.settle() is None  # too few new connections to bother
    assert collected_normally(state)
    keeper.live = keeper.opened_since_freeze = 3
    assert keeper.settle() == "freeze"
    assert not collected_normally(state) and gc.get_freeze_count() > 0
    assert keeper.opened_since_freeze == 0 and keeper.settle() is None


@pytest.mark.neutral
def test_what_closed_connections_left_frozen_is_collected_after_enough_closed(collector):
    keeper = HeapKeeper(freeze_after=1, min_closed=2, turnover=0.5)
    keeper.live = keeper.opened_since_freeze = 8
    state = Cycle()
    alive = weakref.ref(state)
    assert keeper.settle() == "freeze"
    del state  # the connection closed: its cycle is garbage, but frozen
    keeper.closed()
    gc.collect()
    assert alive() is not None  # an ordinary collection does not see it
    keeper.closed()
    assert keeper.settle() is None  # 2 closed, 6 open: under half of them
    keeper.closed()
    assert keeper.settle() == "full"
    assert alive() is None
    # The connections still open are frozen again; their closes count from zero.
    assert keeper.frozen and keeper.closed_since_full == 0
    assert gc.get_freeze_count() > 0


@pytest.mark.neutral
def test_the_last_connection_closing_collects_what_was_frozen(collector):
    keeper = HeapKeeper(freeze_after=1, min_closed=100)
    keeper.live = keeper.opened_since_freeze = 1
    state = Cycle()
    alive = weakref.ref(state)
    assert keeper.settle() == "freeze"
    del state
    keeper.closed()
    assert keeper.settle() == "full" and alive() is None
    assert not keeper.frozen and not keeper._busy()


@pytest.mark.neutral
def test_closes_of_connections_never_frozen_are_left_to_the_collector(collector):
    keeper = HeapKeeper(freeze_after=10, min_closed=1)
    keeper.live = 5
    keeper.closed()
    assert keeper.closed_since_full == 0 and keeper.settle() is None


@pytest.mark.neutral
@pytest.mark.parametrize("off", ["setting", "collector"])
def test_nothing_is_frozen_when_turned_off_or_the_collector_is_disabled(collector, off):
    keeper = HeapKeeper(freeze_after=1)
    keeper.live = keeper.opened_since_freeze = 5
    state = Cycle()
    with override_settings(DURABLE_SESSIONS={"GC_FREEZE_CONNECTIONS": off != "setting"}):
        if off == "collector":
            gc.disable()
        assert keeper.settle() is None
    assert collected_normally(state) and gc.get_freeze_count() == 0


@pytest.mark.django_db(transaction=True)
async def test_a_websocket_connection_is_counted_while_open(collector):
    session, store = await database_sync_to_async(anonymous_session)()
    before = heap.keeper.live
    comm, _ = await open_ws(session.id, store=store)
    assert heap.keeper.live == before + 1
    await comm.disconnect()
    assert heap.keeper.live == before


@pytest.mark.neutral
def test_what_survives_a_full_collection_of_the_collector_is_frozen(collector):
    keeper = HeapKeeper(freeze_after=2)
    keeper.live = 2
    gc.callbacks.append(keeper._observe)
    try:
        renewed = Cycle()  # a connection's state, replaced since the last freeze
        assert keeper.settle() is None
        gc.collect(1)  # a younger collection: nothing to do
        assert keeper.settle() is None
        gc.collect()
        assert keeper.settle() == "freeze"
        assert not collected_normally(renewed) and keeper.frozen
    finally:
        gc.callbacks.remove(keeper._observe)


@pytest.mark.neutral
def test_what_was_frozen_is_collected_at_the_latest_after_full_seconds(collector):
    keeper = HeapKeeper(freeze_after=1, min_closed=100, full_seconds=60)
    keeper.live = keeper.opened_since_freeze = 10
    state = Cycle()  # in use when frozen (a request, say), garbage soon after
    alive = weakref.ref(state)
    assert keeper.settle() == "freeze"
    del state
    assert keeper.settle() is None and alive() is not None
    keeper.frozen_at -= 60
    assert keeper.settle() == "full" and alive() is None
    assert keeper.frozen  # the open connections' objects are frozen again

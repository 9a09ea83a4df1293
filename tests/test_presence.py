"""Presence and typing: snapshots, live changes, expiry, privacy; memory and Redis stores."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.db import database_sync_to_async

from durable_sessions.delivery import presence
from tests.factories import anonymous_session, make_user, open_ws

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async


@pytest.fixture(autouse=True)
def quick_presence(ds_config):
    ds_config(PRESENCE_SWEEP=0.1, PRESENCE_HEARTBEAT=0.3, PRESENCE_TTL=1.0, TYPING_TIMEOUT=0.6)


async def next_presence(comm, predicate=lambda frame: True, limit: int = 50) -> dict:
    for _ in range(limit):
        frame = await comm.receive_json_from(timeout=5)
        if frame["type"] == "presence" and predicate(frame):
            return frame
    raise AssertionError("no matching presence frame")


async def test_devices_joining_and_leaving_are_counted():
    session, store = await db(anonymous_session)()
    laptop, frames = await open_ws(session.id, store=store)
    assert frames[0]["presence"]["customer"] == {"online": True, "devices": 1, "typing": False}
    phone, frames = await open_ws(session.id, store=store)
    assert frames[0]["presence"]["customer"]["devices"] == 2
    seen = await next_presence(laptop)
    assert seen["customer"]["devices"] == 2
    await phone.disconnect()
    seen = await next_presence(laptop)
    assert seen["customer"]["devices"] == 1
    await laptop.disconnect()


async def test_operators_viewing_are_shown_and_customer_typing_reaches_them():
    session, store = await db(anonymous_session)()
    olga = await db(make_user)("olga", operator=True)
    customer, _ = await open_ws(session.id, store=store)
    console, frames = await open_ws(session.id, user=olga)
    assert frames[0]["presence"]["operators"][0]["display_name"] == "olga"
    seen = await next_presence(customer, lambda f: f["operators"])
    assert seen["operators"][0] == {
        "user_id": olga.pk,
        "display_name": "olga",
        "devices": 1,
        "typing": False,
    }
    await customer.send_json_to({"type": "typing", "state": "start"})
    assert (await next_presence(console, lambda f: f["customer"]["typing"]))["customer"]["online"]
    await customer.send_json_to({"type": "typing", "state": "stop"})
    await next_presence(console, lambda f: not f["customer"]["typing"])
    for comm in (customer, console):
        await comm.disconnect()


async def test_typing_expires_without_a_stop():
    session, store = await db(anonymous_session)()
    olga = await db(make_user)("olga", operator=True)
    customer, _ = await open_ws(session.id, store=store)
    console, _ = await open_ws(session.id, user=olga)
    await customer.send_json_to({"type": "typing", "state": "start"})
    await next_presence(console, lambda f: f["customer"]["typing"])
    started = time.monotonic()
    await next_presence(console, lambda f: not f["customer"]["typing"])
    assert time.monotonic() - started >= 0.3  # it expired; nobody sent a stop
    for comm in (customer, console):
        await comm.disconnect()


async def test_sending_a_message_ends_typing():
    session, store = await db(anonymous_session)()
    olga = await db(make_user)("olga", operator=True)
    customer, _ = await open_ws(session.id, store=store)
    console, _ = await open_ws(session.id, user=olga)
    await customer.send_json_to({"type": "typing", "state": "start"})
    await next_presence(console, lambda f: f["customer"]["typing"])
    await customer.send_json_to({"type": "message.send", "content": "hi", "client_id": "1"})
    await next_presence(console, lambda f: not f["customer"]["typing"])
    for comm in (customer, console):
        await comm.disconnect()


async def test_a_private_note_never_shows_as_typing_to_the_customer():
    session, store = await db(anonymous_session)()
    olga = await db(make_user)("olga", operator=True)
    omar = await db(make_user)("omar", operator=True)
    customer, _ = await open_ws(session.id, store=store)
    console, _ = await open_ws(session.id, user=olga)
    other, _ = await open_ws(session.id, user=omar)
    await console.send_json_to({"type": "typing", "state": "start", "private": True})
    noted = await next_presence(other, lambda f: any(p.get("writing_note") for p in f["operators"]))
    assert not any(p["typing"] for p in noted["operators"])
    await console.send_json_to({"type": "typing", "state": "start"})
    public = await next_presence(customer, lambda f: any(p["typing"] for p in f["operators"]))
    assert all("writing_note" not in p for p in public["operators"])
    for comm in (customer, console, other):
        await comm.disconnect()


@pytest.mark.parametrize(
    ("frame", "code", "field"),
    [
        ({"type": "typing", "state": "maybe"}, "invalid_field", "state"),
        ({"type": "typing"}, "invalid_field", "state"),
        ({"type": "typing", "state": "start", "private": "yes"}, "invalid_field", "private"),
        ({"type": "typing", "state": "start", "private": True}, "not_allowed", "private"),
    ],
)
async def test_bad_typing_frames_are_refused(frame, code, field):
    session, store = await db(anonymous_session)()
    customer, _ = await open_ws(session.id, store=store)
    await customer.send_json_to(frame)
    while (error := await customer.receive_json_from(timeout=5))["type"] == "presence":
        pass
    assert error["type"] == "error" and error["code"] == code and error.get("field") == field
    await customer.disconnect()


async def test_a_ghost_from_a_dead_process_expires():
    session, store = await db(anonymous_session)()
    laptop, _ = await open_ws(session.id, store=store)
    # An entry nobody refreshes any more, as a killed process leaves behind.
    ghost = presence.Entry(
        "dead-process-conn", presence.CUSTOMER, None, "Visitor", expires=time.time() + 0.5
    )
    await presence.keeper.store.put(str(session.id), [ghost])
    await presence.keeper.changed(str(session.id))
    await next_presence(laptop, lambda f: f["customer"]["devices"] == 2)
    await next_presence(laptop, lambda f: f["customer"]["devices"] == 1)
    await laptop.disconnect()


class Member:
    """A connection as the keeper sees it; ``alive`` as its consumer reports it."""

    def __init__(self, room: str, conn: str) -> None:
        self.presence_room = room
        self.presence_entry = presence.Entry(conn, presence.CUSTOMER, None, "Visitor")
        self.alive = True
        self.frames: list[dict] = []

    async def presence_changed(self, frames: presence.Frames) -> None:
        self.frames.append(frames.for_viewer(operator=False))

    def presence_alive(self) -> bool:
        return self.alive


async def test_the_entry_of_a_connection_that_died_without_leaving_is_not_renewed():
    session, store = await db(anonymous_session)()
    room = str(session.id)
    laptop, _ = await open_ws(session.id, store=store)
    ghost = Member(room, "crashed-consumer")
    await presence.keeper.join(ghost)
    await next_presence(laptop, lambda f: f["customer"]["devices"] == 2)
    ghost.alive = False  # its task ended without disconnect()
    await next_presence(laptop, lambda f: f["customer"]["devices"] == 1)
    assert ghost not in presence.keeper._local.get(room, set())
    state = (await presence.keeper.store.read([room]))[room]
    assert [e.conn for e in state] != ["crashed-consumer"] and len(state) == 1
    await laptop.disconnect()


async def test_one_failing_connection_does_not_stop_the_sweep():
    session, _ = await db(anonymous_session)()
    room = str(session.id)

    class Broken(Member):
        async def presence_changed(self, frames: presence.Frames) -> None:
            raise RuntimeError("this connection is broken")

    broken, fine = Broken(room, "broken"), Member(room, "fine")
    for member in (broken, fine):
        await presence.keeper.join(member)
    fine.frames.clear()
    await presence.keeper.sweep_once()
    assert fine.frames  # reached despite the failure before it (set order aside)
    for member in (broken, fine):
        await presence.keeper.leave(member)


async def test_live_connections_stay_present_past_the_ttl():
    session, store = await db(anonymous_session)()
    olga = await db(make_user)("olga", operator=True)
    customer, _ = await open_ws(session.id, store=store)
    console, _ = await open_ws(session.id, user=olga)
    await asyncio.sleep(2.5)  # more than twice PRESENCE_TTL: heartbeats keep both present
    state = (await presence.keeper.store.read([str(session.id)]))[str(session.id)]
    assert sorted(e.kind for e in state) == ["customer", "operator"]
    for comm in (customer, console):
        await comm.disconnect()


async def test_the_redis_store_shares_and_expires_entries(redis_url):
    store = presence.RedisStore(redis_url)
    key = f"test-{time.time_ns()}"
    alive = presence.Entry("a", presence.CUSTOMER, None, "Visitor", expires=time.time() + 30)
    dying = presence.Entry("b", presence.OPERATOR, 7, "Olga", expires=time.time() + 0.3)
    await store.put(key, [alive, dying])
    other_process = presence.RedisStore(redis_url)
    assert {e.conn for e in (await other_process.read([key]))[key]} == {"a", "b"}
    await asyncio.sleep(0.5)
    assert [e.conn for e in (await other_process.read([key]))[key]] == ["a"]
    await store.remove(key, "a")
    assert (await store.read([key]))[key] == []


async def test_the_redis_store_writes_and_reads_many_sessions_in_chunks(redis_url, monkeypatch):
    monkeypatch.setattr(presence, "PIPELINE_CHUNK", 3)
    store = presence.RedisStore(redis_url)
    keys = [f"test-{time.time_ns()}-{i}" for i in range(8)]
    later = time.time() + 30
    await store.put_many(
        {
            key: [presence.Entry(f"{key}-{n}", presence.CUSTOMER, None, "V", expires=later)]
            for n, key in enumerate(keys)
        }
        | {"empty-session": []}
    )
    found = await presence.RedisStore(redis_url).read([*keys, "empty-session"])
    assert [[e.conn for e in found[key]] for key in keys] == [
        [f"{k}-{n}"] for n, k in enumerate(keys)
    ]
    assert found["empty-session"] == []


def test_the_store_is_chosen_again_when_the_presence_keys_or_the_layer_change(ds_config, settings):
    ds_config(PRESENCE_BACKEND="memory")
    memory = presence.keeper.store
    assert isinstance(memory, presence.MemoryStore)
    assert presence.keeper.store is memory  # kept while nothing changes
    ds_config(PRESENCE_BACKEND="auto")
    assert isinstance(presence.keeper.store, presence.MemoryStore)  # in-memory layer
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:6399/3"]},
        }
    }
    store = presence.keeper.store  # never connects until used
    assert isinstance(store, presence.RedisStore)
    assert store.url == "redis://127.0.0.1:6399/3"


def test_frames_render_once_per_kind_of_viewer():
    now = time.time()
    entries = [
        presence.Entry("c", presence.CUSTOMER, None, "Visitor"),
        presence.Entry("o", presence.OPERATOR, 7, "Olga", typing_until=now + 5, private=True),
    ]
    frames = presence.Frames(entries, now)
    operator = frames.for_viewer(operator=True)
    customer = frames.for_viewer(operator=False)
    assert frames.for_viewer(operator=True) is operator
    assert operator["operators"][0]["writing_note"] is True
    assert "writing_note" not in customer["operators"][0]
    assert customer == presence.render(entries, for_operator=False, now=now)


def test_a_presence_push_carries_what_rendering_needs():
    now = time.time()
    entries = [
        presence.Entry("conn-a", presence.CUSTOMER, None, "Visitor", typing_until=now + 5),
        presence.Entry("conn-b", presence.OPERATOR, 7, "Olga ✓", now + 5, True, now + 40),
        presence.Entry("conn-c", presence.OPERATOR, 7, "Olga ✓", expires=now + 40),
    ]
    pushed = presence.load_entries(presence.dump_entries(entries))
    for operator in (True, False):
        assert presence.render(pushed, for_operator=operator, now=now) == presence.render(
            entries, for_operator=operator, now=now
        )
    assert "conn-a" not in presence.dump_entries(entries)  # connection names stay home

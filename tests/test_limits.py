"""Limits per visitor, user and IP address: across sockets, transports and processes."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.test import AsyncClient, Client
from django.urls import reverse

from durable_sessions import service
from durable_sessions.adapter import VISITOR_KEY
from durable_sessions.api.errors import exception_handler
from durable_sessions.delivery import limits
from durable_sessions.delivery.limits import Limiter, MemoryStore, RedisStore, Who, ip_key
from durable_sessions.errors import RateLimited
from durable_sessions.models import DurableSession, Message
from tests.factories import anonymous_session, communicator, make_user, open_ws, recv

db = database_sync_to_async
JSON = "application/json"
PUBLIC_IP, OTHER_PUBLIC_IP = "1.2.3.4", "1.2.3.5"  # globally routable: limited per IP


class Clock:
    """A clock the test moves: no test waits for a window to pass."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def url(name: str, session: Any = None, **query: Any) -> str:
    path = reverse(f"durable_sessions:{name}", args=[session.pk] if session else [])
    return path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def visitor_client(visitor: str, address: str = "127.0.0.1") -> Client:
    client = Client(REMOTE_ADDR=address)
    store = Client().session
    store[VISITOR_KEY] = visitor
    store.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
    return client


def assert_rate_limited(response: Any) -> int:
    """The 429 shape: the error with ``retry_after``, and the same in ``Retry-After``."""
    assert response.status_code == 429, response.content
    body = response.json()["error"]
    assert body["code"] == "rate_limited"
    assert isinstance(body["retry_after"], int) and body["retry_after"] >= 1
    assert response.headers["Retry-After"] == str(body["retry_after"])
    return body["retry_after"]


# --- the limiter ----------------------------------------------------------------------------


def test_a_rate_allows_its_burst_then_refuses_with_the_wait_and_refills(ds_config):
    ds_config(LIMIT_MESSAGES_PER_MINUTE=3, LIMIT_MESSAGES_PER_MINUTE_PER_IP=0)
    clock = Clock()
    limiter = Limiter(MemoryStore(), clock)
    who = Who("vabc", None)
    assert [limiter.hit("message", who) for _ in range(3)] == [None, None, None]
    assert limiter.hit("message", who) == pytest.approx(20.0)  # one per 60 / 3 s
    clock.now += 5
    assert limiter.hit("message", who) == pytest.approx(15.0)  # refusals used nothing
    with pytest.raises(RateLimited) as refused:
        limiter.check("message", who)
    assert (refused.value.code, refused.value.status_code, refused.value.retry_after) == (
        "rate_limited",
        429,
        15,
    )
    assert refused.value.payload()["retry_after"] == 15
    clock.now += 15
    assert limiter.hit("message", who) is None
    assert limiter.hit("message", Who("vother", None)) is None  # each visitor its own


def test_a_refusal_by_one_limit_takes_nothing_from_the_other(ds_config):
    ds_config(LIMIT_MESSAGES_PER_MINUTE=2, LIMIT_MESSAGES_PER_MINUTE_PER_IP=3)
    limiter = Limiter(MemoryStore(), Clock())
    first, second = Who("va", PUBLIC_IP), Who("vb", PUBLIC_IP)
    assert limiter.hit("message", first) is None
    assert limiter.hit("message", first) is None
    assert limiter.hit("message", first) is not None  # the visitor's limit, not the IP's
    assert limiter.hit("message", second) is None  # so the address has one left
    assert limiter.hit("message", second) is not None


def test_zero_turns_a_limit_off_and_operators_are_exempt(ds_config):
    ds_config(LIMIT_SESSIONS_PER_HOUR=0, LIMIT_SESSIONS_PER_HOUR_PER_IP=1)
    limiter = Limiter(MemoryStore(), Clock())
    assert [limiter.hit("session", Who("va", None)) for _ in range(50)] == [None] * 50
    assert limiter.hit("session", Who("va", PUBLIC_IP)) is None
    assert limiter.hit("session", Who("vb", PUBLIC_IP)) is not None
    assert limiter.hit("session", Who("u1", PUBLIC_IP, exempt=True)) is None


def test_the_limits_are_settings_and_refuse_negative_values(settings):
    from django.core.exceptions import ImproperlyConfigured

    from durable_sessions.app_settings import ds_settings

    settings.DURABLE_SESSIONS = {"LIMIT_MESSAGES_PER_MINUTE": -1}
    with pytest.raises(ImproperlyConfigured, match=r"must be >= 0 \(0: off\), not -1"):
        ds_settings.LIMIT_MESSAGES_PER_MINUTE  # noqa: B018
    settings.DURABLE_SESSIONS = {}
    assert ds_settings.LIMIT_CONNECTIONS_PER_VISITOR == 20
    assert ds_settings.PRESENCE_COALESCE_MS == 250.0


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("1.2.3.4", "1.2.3.4"),
        ("127.0.0.1", None),  # a proxy on the same machine: shared by everyone behind it
        ("10.1.2.3", None),
        ("192.168.0.9", None),
        ("::1", None),
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("2001:4860:4860::8888", "2001:4860:4860::/64"),
        ("2001:4860:4860:0:1:2:3:4", "2001:4860:4860::/64"),  # same /64: same machine
        ("not an address", None),
        ("", None),
        (None, None),
    ],
)
def test_addresses_are_limited_when_global_and_ipv6_by_its_64(address, key):
    assert ip_key(address) == key


async def test_slots_are_limited_released_and_expire_when_not_renewed(ds_config):
    ds_config(LIMIT_CONNECTIONS_PER_VISITOR=2, LIMIT_CONNECTIONS_PER_SESSION=0)
    clock = Clock()
    limiter = Limiter(MemoryStore(), clock)
    who = Who("va", None)
    first = await limiter.aacquire("connection", who, "s1")
    second = await limiter.aacquire("connection", who, "s2")
    with pytest.raises(RateLimited) as refused:
        await limiter.aacquire("connection", who, "s3")
    assert refused.value.retry_after == limits.SLOT_RETRY_AFTER
    await limiter.arelease(first)
    await limiter.arelease(first)  # twice is harmless
    third = await limiter.aacquire("connection", who, "s3")
    # Renewed slots stay; slots nobody renews (their process died) expire after the TTL.
    clock.now += 30
    await limiter.renew_once()
    clock.now += 30
    with pytest.raises(RateLimited):
        await limiter.aacquire("connection", who, "s4")
    del second, third
    limiter._held.clear()  # as if the process holding them had been killed
    clock.now += 41
    await limiter.aacquire("connection", who, "s4")


# --- across processes: two limiters sharing Redis ---------------------------------------------


@pytest.fixture
def redis_limiters(redis_url, ds_config):
    """Two limiters as two processes would have, on their own keys in the test Redis."""
    import redis

    prefix = f"test-limits-{uuid.uuid4().hex[:8]}"
    ds_config(GROUP_PREFIX=prefix)
    clock = Clock()
    pair = (Limiter(RedisStore(redis_url), clock), Limiter(RedisStore(redis_url), clock))
    yield pair, clock
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}:limit:*"))
    if keys:
        client.delete(*keys)


async def test_rates_hold_across_processes_sharing_redis(redis_limiters, ds_config):
    (a, b), clock = redis_limiters
    ds_config(LIMIT_MESSAGES_PER_MINUTE=4, LIMIT_MESSAGES_PER_MINUTE_PER_IP=5)
    who = Who("va", PUBLIC_IP)
    assert a.hit("message", who) is None  # sync (an HTTP view)
    assert await b.ahit("message", who) is None  # async (a websocket)
    assert a.hit("message", who) is None
    assert await b.ahit("message", who) is None
    assert await a.ahit("message", who) == pytest.approx(15.0)
    assert b.hit("message", who) == pytest.approx(15.0)
    assert await b.ahit("message", Who("vb", PUBLIC_IP)) is None  # the address's fifth
    assert a.hit("message", Who("vc", PUBLIC_IP)) == pytest.approx(12.0)
    clock.now += 15
    assert a.hit("message", who) is None


async def test_slots_hold_across_processes_and_a_dead_process_frees_its_own(
    redis_limiters, ds_config
):
    (a, b), clock = redis_limiters
    ds_config(LIMIT_CONNECTIONS_PER_VISITOR=3, LIMIT_CONNECTIONS_PER_SESSION=1)
    who = Who("va", None)
    on_a = [await a.aacquire("connection", who, "s1"), await a.aacquire("connection", who, "s2")]
    with pytest.raises(RateLimited):
        await b.aacquire("connection", who, "s1")  # the per-session limit, held on a
    on_b = await b.aacquire("connection", who, "s3")
    with pytest.raises(RateLimited):
        await b.aacquire("connection", who, "s4")  # the visitor's limit, two held on a
    await b.arelease(on_b)
    kept = await b.aacquire("connection", who, "s4")
    # a is killed: nobody renews its slots; b renews its own and outlives the TTL.
    a._held.clear()
    del on_a
    clock.now += 30
    await b.renew_once()
    clock.now += 30
    again = [await b.aacquire("connection", who, "s1"), await b.aacquire("connection", who, "s2")]
    with pytest.raises(RateLimited):
        await b.aacquire("connection", who, "s5")  # s4 was renewed: still three
    for slot in [kept, *again]:
        await b.arelease(slot)


async def test_an_unreachable_redis_lets_everything_through_and_says_so_once(ds_config, caplog):
    ds_config(LIMIT_MESSAGES_PER_MINUTE=1)
    limiter = Limiter(RedisStore("redis://127.0.0.1:1/0"))
    who = Who("va", None)
    with caplog.at_level(logging.WARNING, logger="durable_sessions.delivery.limits"):
        assert [limiter.hit("message", who) for _ in range(3)] == [None] * 3
        assert await limiter.ahit("message", who) is None
        await limiter.arelease(await limiter.aacquire("connection", who, "s"))
    assert [r.getMessage()[:20] for r in caplog.records] == ["limits not enforced:"]


# --- the websocket ---------------------------------------------------------------------------


async def expect_refused(comm: Any) -> dict[str, Any]:
    connected, _ = await comm.connect()
    assert connected  # the handshake completes, so that the close code reaches the client
    frame = await comm.receive_json_from(timeout=5)
    closed = await comm.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": limits.CLOSE_CODE}
    assert frame["type"] == "error" and frame["code"] == "rate_limited"
    assert frame["retry_after"] >= 1
    return frame


@pytest.mark.django_db(transaction=True)
async def test_a_visitor_opening_more_sockets_than_allowed_is_closed_with_4429(ds_config):
    ds_config(LIMIT_CONNECTIONS_PER_VISITOR=3, LIMIT_CONNECTIONS_PER_SESSION=2)
    session, store = await db(anonymous_session)("v-many")
    other = await db(service.create_session)(visitor="v-many")
    first, _ = await open_ws(session.id, store=store)
    second, _ = await open_ws(session.id, store=store)
    await expect_refused(communicator(session.id, store=store))  # two per session
    third, _ = await open_ws(other.id, store=store)
    await expect_refused(communicator(other.id, store=store))  # three in all
    # Another visitor is not affected; closing a socket frees its place.
    someone, someone_store = await db(anonymous_session)("v-else")
    elsewhere, _ = await open_ws(someone.id, store=someone_store)
    await first.disconnect()
    again, _ = await open_ws(other.id, store=store)
    for comm in (second, third, elsewhere, again):
        await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_connections_from_one_address_are_limited_across_visitors(ds_config):
    ds_config(LIMIT_CONNECTIONS_PER_IP=2)
    opened = []
    for visitor, address in [("v-1", PUBLIC_IP), ("v-2", PUBLIC_IP), ("v-3", OTHER_PUBLIC_IP)]:
        session, store = await db(anonymous_session)(visitor)
        comm = communicator(session.id, store=store)
        comm.scope["client"] = [address, 50000]
        opened.append(comm)
        assert (await comm.connect())[0]
    session, store = await db(anonymous_session)("v-4")
    comm = communicator(session.id, store=store)
    comm.scope["client"] = [PUBLIC_IP, 50001]
    await expect_refused(comm)
    for comm in opened:
        await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_operators_are_not_limited_by_the_customer_limits(ds_config):
    ds_config(LIMIT_CONNECTIONS_PER_VISITOR=1, LIMIT_CONNECTIONS_PER_SESSION=1)
    olga = await db(make_user)("olga", operator=True)
    session, _ = await db(anonymous_session)()
    comms = [(await open_ws(session.id, user=olga))[0] for _ in range(3)]
    for comm in comms:
        await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_messages_share_one_budget_across_websocket_and_http(ds_config):
    ds_config(LIMIT_MESSAGES_PER_MINUTE=3)
    session, store = await db(anonymous_session)("v-chatty")
    phone, _ = await open_ws(session.id, store=store)
    laptop, _ = await open_ws(session.id, store=store)
    for comm, client_id in [(phone, "a"), (laptop, "b")]:
        await comm.send_json_to({"type": "message.send", "content": "hi", "client_id": client_id})
        while (await recv(comm))["type"] != "ack":
            pass  # the message's event, live
    http = AsyncClient()
    http.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
    posted = await http.post(
        url("session-messages", session), {"content": "c", "client_id": "c"}, content_type=JSON
    )
    assert posted.status_code == 201
    stored = await Message.objects.filter(session=session).acount()

    await phone.send_json_to({"type": "message.send", "content": "d", "client_id": "d", "ref": 7})
    while (frame := await recv(phone))["type"] != "error":
        assert "seq" in frame  # the others' messages, live
    assert frame["code"] == "rate_limited" and frame["ref"] == 7 and frame["retry_after"] >= 1
    refused = await http.post(
        url("session-messages", session), {"content": "e", "client_id": "e"}, content_type=JSON
    )
    assert_rate_limited(refused)
    assert await Message.objects.filter(session=session).acount() == stored
    assert not await Message.objects.filter(client_id__in=["d", "e"]).aexists()
    for comm in (phone, laptop):
        await comm.disconnect()


# --- HTTP ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_sessions_created_per_hour_are_limited_with_retry_after(ds_config):
    ds_config(LIMIT_SESSIONS_PER_HOUR=2)
    client = visitor_client("v-maker")
    for _ in range(2):
        assert client.post(url("session-create"), {}, content_type=JSON).status_code == 201
    retry = assert_rate_limited(client.post(url("session-create"), {}, content_type=JSON))
    assert retry == 1800  # the next of two per hour
    assert DurableSession.objects.filter(owner_visitor="v-maker").count() == 2
    # Another visitor has their own.
    assert (
        visitor_client("v-other").post(url("session-create"), {}, content_type=JSON).status_code
        == 201
    )


@pytest.mark.django_db
def test_an_address_is_limited_across_visitors_and_a_private_one_is_not(ds_config):
    ds_config(LIMIT_SESSIONS_PER_HOUR_PER_IP=2)
    for visitor in ("v-1", "v-2"):
        client = visitor_client(visitor, PUBLIC_IP)
        assert client.post(url("session-create"), {}, content_type=JSON).status_code == 201
    assert_rate_limited(
        visitor_client("v-3", PUBLIC_IP).post(url("session-create"), {}, content_type=JSON)
    )
    # A client that drops its cookie is still the same address.
    assert_rate_limited(
        Client(REMOTE_ADDR=PUBLIC_IP).post(url("session-create"), {}, content_type=JSON)
    )
    for visitor in ("v-4", "v-5", "v-6"):
        client = visitor_client(visitor, "10.0.0.8")  # behind a proxy: not limited per IP
        assert client.post(url("session-create"), {}, content_type=JSON).status_code == 201


@pytest.mark.django_db
def test_operators_post_without_the_customer_limits(ds_config):
    ds_config(LIMIT_MESSAGES_PER_MINUTE=1, LIMIT_SESSIONS_PER_HOUR=1)
    olga = make_user("olga", operator=True)
    session = service.create_session(visitor="v-x")
    client = Client(REMOTE_ADDR=PUBLIC_IP)
    client.force_login(olga)
    for i in range(3):
        response = client.post(
            url("session-messages", session), {"content": f"m{i}"}, content_type=JSON
        )
        assert response.status_code == 201
        assert client.post(url("session-create"), {}, content_type=JSON).status_code == 201


def polls_waiting() -> int:
    return sum(":long_poll:" in key for slot in limits.limiter._held for key in slot.keys)


@pytest.mark.django_db(transaction=True)
async def test_concurrent_long_polls_per_visitor_are_limited(ds_config):
    ds_config(LIMIT_LONG_POLLS_PER_VISITOR=1)
    owner = await db(make_user)("owner")
    session = await service.acreate_session(owner=owner)
    author = await db(service.participant_for)(session.pk, "customer")
    client = AsyncClient()
    await client.aforce_login(owner)
    waiting = asyncio.create_task(client.get(url("session-events", session, after_seq=1, wait=20)))
    for _ in range(200):  # until the first one waits
        if polls_waiting():
            break
        await asyncio.sleep(0.05)
    second = await client.get(url("session-events", session, after_seq=1, wait=20))
    assert_rate_limited(second)
    # A read that does not wait is not limited.
    assert (await client.get(url("session-events", session, after_seq=0))).status_code == 200
    await service.apost_message(session.pk, author=author, content="wake up")
    assert (await waiting).status_code == 200
    assert not polls_waiting()  # the slot was given back


def test_the_api_answers_a_refusal_with_429_retry_after_and_the_shared_payload():
    refused = RateLimited("too many messages; try again in 3 s", 2.2)
    response = exception_handler(refused, {})
    assert response is not None and response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.data == {"error": refused.payload()}
    assert refused.payload(ref="r1") == {
        "code": "rate_limited",
        "message": "too many messages; try again in 3 s",
        "ref": "r1",
        "retry_after": 3,
    }

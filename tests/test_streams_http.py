"""The Durable Streams transport in one process: access, the write path's rules, reads,
long polls woken by commits, and sessions as read-only JSON streams.

The full protocol is proved by the official conformance suite against a real server
(tests/test_streams_conformance.py); these tests pin what is the project's own: who may
do what, and how sessions map onto streams.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import AsyncClient
from rest_framework.authtoken.models import Token

from durable_sessions import service
from durable_sessions.models import ParticipantKind
from durable_sessions.stream_models import Stream, StreamEntry
from durable_sessions.stream_offsets import format_offset
from tests.factories import make_user, visitor_session

db = database_sync_to_async
pytestmark = pytest.mark.django_db(transaction=True)


def token_of(user: Any) -> dict[str, str]:
    return {"Authorization": f"Token {Token.objects.create(user=user).key}"}


@pytest.fixture
def open_streams(ds_config):
    ds_config(STREAMS_ACCESS="anyone", STREAMS_LONG_POLL_TIMEOUT=5)


async def put(client: AsyncClient, path: str, body: bytes = b"", **headers: str) -> Any:
    kind = headers.pop("content_type", "text/plain")
    # The test client sends no content type with an empty body; a real client does.
    if not body:
        headers.setdefault("Content-Type", kind)
    return await client.put(f"/v1/stream/{path}", body, content_type=kind, headers=headers)


async def post(client: AsyncClient, path: str, body: bytes, **headers: str) -> Any:
    kind = headers.pop("content_type", "text/plain")
    return await client.post(f"/v1/stream/{path}", body, content_type=kind, headers=headers)


# --- access -----------------------------------------------------------------------------


async def test_generic_streams_are_for_staff_by_default():
    staff = await db(make_user)("staff", staff=True)
    customer = await db(make_user)("customer")
    anonymous = AsyncClient()
    assert (await put(anonymous, "a")).status_code == 401
    refused = await put(anonymous, "a", **await db(token_of)(customer))
    assert refused.status_code == 403
    created = await put(anonymous, "a", b"hi", **await db(token_of)(staff))
    assert created.status_code == 201
    assert await db(Stream.objects.count)() == 1
    assert (await anonymous.get("/v1/stream/a")).status_code == 401


async def test_a_bad_token_is_refused_and_changes_nothing():
    response = await put(AsyncClient(), "a", b"hi", Authorization="Token nope")
    assert response.status_code == 401
    assert await db(Stream.objects.count)() == 0


async def test_a_staff_cookie_needs_the_csrf_token_to_write():
    staff = await db(make_user)("staff", staff=True)
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(staff)
    assert (await put(client, "a", b"hi")).status_code == 403
    assert await db(Stream.objects.count)() == 0
    # Reading needs no CSRF token.
    assert (await client.get("/v1/stream/a")).status_code == 404


async def test_streams_turned_off_are_not_served(ds_config):
    ds_config(STREAMS_ACCESS="off")
    staff = await db(make_user)("staff", staff=True)
    response = await put(AsyncClient(), "a", b"hi", **await db(token_of)(staff))
    assert response.status_code == 404
    assert await db(Stream.objects.count)() == 0


# --- writes and reads ---------------------------------------------------------------------


async def test_appends_are_read_back_in_order_with_their_offsets(open_streams):
    client = AsyncClient()
    created = await put(client, "chat/1", b"one ")
    assert created.status_code == 201
    assert created["Stream-Next-Offset"] == format_offset(1, 4)
    appended = await post(client, "chat/1", b"two")
    assert appended.status_code == 204 and appended["Stream-Next-Offset"] == format_offset(2, 7)
    whole = await client.get("/v1/stream/chat/1?offset=-1")
    assert whole.content == b"one two" and whole["Stream-Up-To-Date"] == "true"
    rest = await client.get(f"/v1/stream/chat/1?offset={created['Stream-Next-Offset']}")
    assert rest.content == b"two"


async def test_json_appends_are_flattened_one_level(open_streams):
    client = AsyncClient()
    await put(client, "j", b"[]", content_type="application/json")
    await post(client, "j", b'[{"a":1},[2,3]]', content_type="application/json")
    await post(client, "j", b'"x"', content_type="application/json")
    response = await client.get("/v1/stream/j")
    assert json.loads(response.content) == [{"a": 1}, [2, 3], "x"]


async def test_a_producer_retry_is_stored_once(open_streams):
    client = AsyncClient()
    await put(client, "p")
    producer = {"Producer-Id": "w1", "Producer-Epoch": "0", "Producer-Seq": "0"}
    first = await post(client, "p", b"once", **producer)
    retry = await post(client, "p", b"once", **producer)
    assert (first.status_code, retry.status_code) == (200, 204)
    assert await db(StreamEntry.objects.count)() == 1


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Producer-Id": "w1"}, b"x", 400),
        ({"Producer-Id": "w", "Producer-Epoch": "01", "Producer-Seq": "0"}, b"x", 400),
        ({"content_type": "application/json"}, b"{not json", 400),
        ({"content_type": "application/json"}, b"[]", 400),
        ({"content_type": "text/html"}, b"x", 409),
        ({}, b"", 400),
    ],
)
async def test_bad_appends_are_refused_and_change_nothing(open_streams, headers, body, status):
    client = AsyncClient()
    json_mode = headers.get("content_type") == "application/json"
    kind = "application/json" if json_mode else "text/plain"
    created = await put(client, "b", b'"kept"', content_type=kind)
    assert created.status_code == 201
    before = await db(lambda: list(StreamEntry.objects.values_list("data", flat=True)))()
    response = await post(client, "b", body, **headers)
    assert response.status_code == status
    after = await db(lambda: list(StreamEntry.objects.values_list("data", flat=True)))()
    assert after == before


async def test_a_closed_stream_refuses_appends_and_says_so(open_streams):
    client = AsyncClient()
    await put(client, "c", b"all")
    closed = await post(client, "c", b"", **{"Stream-Closed": "true"})
    assert closed.status_code == 204 and closed["Stream-Closed"] == "true"
    refused = await post(client, "c", b"more")
    assert refused.status_code == 409 and refused["Stream-Closed"] == "true"
    eof = await client.get(f"/v1/stream/c?offset={closed['Stream-Next-Offset']}")
    assert eof.content == b"" and eof["Stream-Closed"] == "true"


async def test_a_long_poll_returns_when_an_append_commits(open_streams):
    client = AsyncClient()
    created = await put(client, "live")
    tail = created["Stream-Next-Offset"]

    async def append_later() -> None:
        await asyncio.sleep(0.3)
        await post(AsyncClient(), "live", b"news")

    writer = asyncio.create_task(append_later())
    response = await client.get(f"/v1/stream/live?offset={tail}&live=long-poll")
    await writer
    assert response.status_code == 200 and response.content == b"news"
    assert response["Stream-Cursor"]
    stream_id = await db(lambda: Stream.objects.get(path="live").pk)()
    assert not get_channel_layer().groups.get(f"ds.st.{stream_id}")


async def test_a_long_poll_at_the_tail_of_a_quiet_stream_answers_204(ds_config):
    ds_config(STREAMS_ACCESS="anyone", STREAMS_LONG_POLL_TIMEOUT=0.5)
    client = AsyncClient()
    created = await put(client, "quiet")
    tail = created["Stream-Next-Offset"]
    response = await client.get(f"/v1/stream/quiet?offset={tail}&live=long-poll")
    assert response.status_code == 204
    assert response["Stream-Next-Offset"] == tail and response["Stream-Up-To-Date"] == "true"


# --- sessions as streams ------------------------------------------------------------------


async def visitor_client(store: Any) -> AsyncClient:
    client = AsyncClient()
    client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
    return client


async def test_a_session_reads_as_a_json_stream_whose_offsets_are_its_seqs():
    store = await db(visitor_session)("v1")
    session = await service.acreate_session(visitor="v1", title="t")
    customer = await db(service.participant_for)(session.pk, ParticipantKind.CUSTOMER)
    await service.apost_message(session.pk, author=customer, content="hello")
    client = await visitor_client(store)
    whole = await client.get(f"/v1/session/{session.pk}?offset=-1")
    assert whole.status_code == 200 and whole["Content-Type"] == "application/json"
    assert whole["Cache-Control"] == "no-store"
    events = json.loads(whole.content)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert whole["Stream-Next-Offset"] == format_offset(seqs[-1])
    rest = await client.get(f"/v1/session/{session.pk}?offset={format_offset(1)}")
    assert [e["seq"] for e in json.loads(rest.content)] == seqs[1:]


async def test_a_session_stream_is_read_only_and_private():
    store = await db(visitor_session)("owner")
    session = await service.acreate_session(visitor="owner", title="t")
    stranger = await visitor_client(await db(visitor_session)("stranger"))
    assert (await stranger.get(f"/v1/session/{session.pk}")).status_code == 404
    owner = await visitor_client(store)
    for method in ("post", "put", "delete"):
        response = await getattr(owner, method)(f"/v1/session/{session.pk}")
        assert response.status_code == 405
    assert (await owner.get("/v1/session/not-a-uuid")).status_code == 404


async def test_an_operator_token_reads_any_session():
    operator = await db(make_user)("op", operator=True)
    session = await service.acreate_session(visitor="someone", title="t")
    headers = await db(token_of)(operator)
    response = await AsyncClient().get(f"/v1/session/{session.pk}", headers=headers)
    assert response.status_code == 200
    assert json.loads(response.content)[0]["type"] == "session.created"


async def test_a_follower_whose_visitor_session_ends_is_cut_off(ds_config):
    ds_config(RECHECK_ACCESS_SECONDS=0.001, STREAMS_LONG_POLL_TIMEOUT=10)
    store = await db(visitor_session)("leaving")
    session = await service.acreate_session(visitor="leaving", title="t")
    client = await visitor_client(store)
    tail = format_offset(session.last_seq)
    waiting = asyncio.create_task(
        client.get(f"/v1/session/{session.pk}?offset={tail}&live=long-poll")
    )
    await asyncio.sleep(0.3)
    await db(store.delete)()  # what logging out does to the Django session
    response = await asyncio.wait_for(waiting, 8)
    assert response.status_code == 404


async def test_a_follower_keeps_following_while_allowed(ds_config):
    ds_config(RECHECK_ACCESS_SECONDS=0.001, STREAMS_LONG_POLL_TIMEOUT=10)
    store = await db(visitor_session)("staying")
    session = await service.acreate_session(visitor="staying", title="t")
    customer = await db(service.participant_for)(session.pk, ParticipantKind.CUSTOMER)
    client = await visitor_client(store)
    tail = format_offset(session.last_seq)

    async def post_later() -> None:
        await asyncio.sleep(0.5)
        await service.apost_message(session.pk, author=customer, content="still here")

    poster = asyncio.create_task(post_later())
    response = await client.get(f"/v1/session/{session.pk}?offset={tail}&live=long-poll")
    await poster
    assert response.status_code == 200
    assert json.loads(response.content)[0]["data"]["message"]["content"] == "still here"


async def test_a_visitor_waits_on_a_few_long_polls_at_once(ds_config):
    ds_config(LIMIT_LONG_POLLS_PER_VISITOR=1, STREAMS_LONG_POLL_TIMEOUT=1)
    store = await db(visitor_session)("eager")
    session = await service.acreate_session(visitor="eager", title="t")
    client = await visitor_client(store)
    url = f"/v1/session/{session.pk}?offset={format_offset(session.last_seq)}&live=long-poll"
    first = asyncio.create_task(client.get(url))
    await asyncio.sleep(0.3)
    second = await client.get(url)
    assert second.status_code == 429 and int(second["Retry-After"]) >= 1
    assert (await first).status_code == 204
    # The slot is given back when the wait ends.
    assert (await client.get(url)).status_code == 204


def test_streams_open_to_anyone_warn_at_deploy(ds_config):
    from durable_sessions.checks import check_open_streams

    assert check_open_streams() == []
    ds_config(STREAMS_ACCESS="anyone")
    [warning] = check_open_streams()
    assert warning.id == "durable_sessions.W031"

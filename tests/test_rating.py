"""The customer's rating of a closed conversation (CSAT): once, after close, through the
service, with a session.rated event; the REST API, the websocket frame, the console's rows
and the admin show it; bad input gets a clear error and changes nothing."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable_sessions import service
from durable_sessions.errors import Conflict, InvalidInput
from durable_sessions.models import DurableSession, Event, SessionRating
from handoff_console import queue
from tests.factories import close, make_user, open_ws, recv
from tests.hypothesis_profiles import examples

pytestmark = pytest.mark.django_db


def chat(owner) -> DurableSession:
    session = service.create_session(owner=owner, title="parcel")
    service.post_message(session.id, author=customer_of(session), content="where is it?")
    return session


def customer_of(session):
    return service.participant_for(session.id, "customer")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def rate(client: Client, session, body) -> tuple[int, dict]:
    url = reverse("durable_sessions:session-rating", args=[session.id])
    response = client.post(url, json.dumps(body), content_type="application/json")
    return response.status_code, response.json()


def events_of(session) -> list[str]:
    return list(Event.objects.filter(session=session).values_list("type", flat=True))


def test_a_closed_conversation_is_rated_once_and_the_log_says_so():
    carla = make_user("carla")
    session = chat(carla)
    with pytest.raises(Conflict, match="once it is closed"):
        service.rate_session(session.id, by=customer_of(session), score=5)
    service.close_session(session.id)

    result = service.rate_session(session.id, by=customer_of(session), score=4, comment=" ok ")
    assert (result.changed, result.rating.score, result.rating.comment) == (True, 4, "ok")
    event = Event.objects.get(session=session, type="session.rated")
    assert event.seq == result.rating.seq
    assert (event.payload["score"], event.payload["comment"]) == (4, "ok")
    assert event.payload["by"]["kind"] == "customer"
    # The same rating again (a retry) changes nothing; another one is refused.
    again = service.rate_session(session.id, by=customer_of(session), score=4, comment="ok")
    assert again.changed is False and again.rating.pk == result.rating.pk
    with pytest.raises(Conflict, match="already rated"):
        service.rate_session(session.id, by=customer_of(session), score=1)
    assert events_of(session).count("session.rated") == 1
    assert SessionRating.objects.get(session=session).score == 4


def test_the_api_takes_the_customers_rating_and_shows_it_to_operators():
    carla, olga = make_user("carla"), make_user("olga", operator=True)
    session = chat(carla)
    customer = client_for(carla)
    assert rate(customer, session, {"score": 5})[1]["error"]["code"] == "conflict"
    service.close_session(session.id)

    bad = [
        ({"score": 0}, "score"),
        ({"score": 6}, "score"),
        ({"score": "5"}, "score"),
        ({"score": True}, "score"),
        ({"score": 4.5}, "score"),
        ({}, "score"),
        ({"score": 3, "comment": 7}, "comment"),
        ({"score": 3, "comment": "x" * 1001}, "comment"),
        ({"score": 3, "stars": 3}, "stars"),
    ]
    for body, field in bad:
        status, data = rate(customer, session, body)
        assert (status, data["error"]["field"]) == (400, field), body
    assert not SessionRating.objects.exists()
    # Operators read it but may not give it.
    status, data = rate(client_for(olga), session, {"score": 5})
    assert (status, data["error"]["code"]) == (403, "permission_denied")

    status, data = rate(customer, session, {"score": 3, "comment": "slow, but solved"})
    assert status == 201 and data["changed"] is True
    assert data["rating"]["score"] == 3 and data["rating"]["comment"] == "slow, but solved"
    assert rate(customer, session, {"score": 3, "comment": "slow, but solved"})[0] == 200
    assert rate(customer, session, {"score": 5})[0] == 409
    url = reverse("durable_sessions:session-rating", args=[session.id])
    read = client_for(olga).get(url).json()
    assert read["rating"]["score"] == 3
    # Nobody else learns that the session exists.
    assert client_for(make_user("mallory")).get(url).status_code == 404

    row = next(r for r in queue.snapshot(olga)["sections"]["closed"] if r["id"] == str(session.id))
    assert row["rating"] == {"score": 3, "comment": "slow, but solved"}


@pytest.mark.django_db(transaction=True)
async def test_the_websocket_frame_rates_and_every_device_sees_the_event():
    from channels.db import database_sync_to_async as db

    carla = await db(make_user)("carla")
    session = await db(chat)(carla)
    await close(session)
    phone, _ = await open_ws(session.id, user=carla)
    laptop, _ = await open_ws(session.id, user=carla)

    await phone.send_json_to({"type": "session.rate", "score": 9, "ref": "r1"})
    error = await recv(phone)
    assert (error["type"], error["field"], error["ref"]) == ("error", "score", "r1")
    await phone.send_json_to({"type": "session.rate", "score": 5, "comment": "great", "ref": 2})
    frames = [await recv(phone), await recv(phone)]
    ack = next(f for f in frames if f["type"] == "ack")
    assert ack["changed"] is True and ack["rating"]["score"] == 5 and ack["ref"] == 2
    rated = next(f for f in frames if f["type"] == "session.rated")
    assert rated["data"]["comment"] == "great"
    seen = await recv(laptop)
    assert (seen["type"], seen["seq"]) == ("session.rated", rated["seq"])
    await phone.disconnect()
    await laptop.disconnect()


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    score=st.one_of(st.integers(-3, 9), st.text(max_size=3), st.none(), st.booleans(), st.floats()),
    comment=st.one_of(st.text(max_size=1100), st.integers(), st.none()),
)
def test_fuzzed_ratings_are_stored_once_or_refused_naming_the_field(closed_session, score, comment):
    SessionRating.objects.filter(session=closed_session).delete()
    try:
        result = service.rate_session(
            closed_session.id, by=customer_of(closed_session), score=score, comment=comment
        )
    except InvalidInput as error:
        assert error.field in ("score", "comment")
        assert not SessionRating.objects.filter(session=closed_session).exists()
    else:
        assert 1 <= result.rating.score <= 5 and isinstance(comment, str)


@pytest.fixture
def closed_session():
    session = chat(make_user("carla"))
    service.close_session(session.id)
    return session


def test_the_admin_lists_ratings():
    root = make_user("root", staff=True)
    root.is_superuser = True
    root.save()
    session = chat(make_user("carla"))
    service.close_session(session.id)
    service.rate_session(session.id, by=customer_of(session), score=2, comment="too slow")
    page = client_for(root).get(reverse("admin:durable_sessions_sessionrating_changelist"))
    assert page.status_code == 200 and b"too slow" in page.content

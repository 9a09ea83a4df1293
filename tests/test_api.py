"""The REST API: access, idempotency, long polling, the websocket's events, CSRF, errors, schema."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlencode

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import AsyncClient, Client
from django.urls import reverse
from openapi_spec_validator import validate
from rest_framework.authtoken.models import Token

from durable_sessions import service, wire
from durable_sessions.adapter import VISITOR_KEY
from durable_sessions.api.errors import exception_handler
from durable_sessions.delivery.groups import session_group
from durable_sessions.delivery.replay import read_events
from durable_sessions.errors import InvalidInput, RateLimited, ServiceError
from durable_sessions.frames import FrameError
from durable_sessions.models import (
    Control,
    DurableSession,
    Event,
    Message,
    ParticipantKind,
    Status,
)
from tests.factories import make_user, open_ws, recv, visitor_session

db = database_sync_to_async
JSON = "application/json"


def url(name: str, session: Any = None, **query: Any) -> str:
    args = [session.pk if isinstance(session, DurableSession) else session] if session else []
    path = reverse(f"durable_sessions:{name}", args=args)
    return f"{path}?{urlencode(query)}" if query else path


def as_visitor(client: Client, visitor: str) -> Client:
    """Put an anonymous visitor id in the client's Django session, as the app does."""
    store = client.session
    store[VISITOR_KEY] = visitor
    store.save()
    return client


def error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]) <= {"code", "message", "field"}, body
    return body["error"]


def event_count(session: DurableSession) -> int:
    return Event.objects.filter(session=session).count()


def customer_of(session: DurableSession):
    return service.participant_for(session.pk, ParticipantKind.CUSTOMER)


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    """The users made here never log in with a password: skip the slow default hasher."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(db: Any) -> SimpleNamespace:
    """Two sessions (one of a user, one of an anonymous visitor) and the people around them."""
    w = SimpleNamespace(
        owner=make_user("owner"),
        other=make_user("other"),
        operator=make_user("operator", operator=True),
        operator2=make_user("operator2", operator=True),
        staff=make_user("staff", staff=True),
    )
    w.user_session = service.create_session(owner=w.owner, title="by a user")
    w.visitor_session = service.create_session(visitor="v-owner", title="by a visitor")
    return w


# who -> (user attribute of the world, anonymous visitor id, the session they act on)
IDENTITIES: dict[str, tuple[str | None, str | None, str]] = {
    "owner_user": ("owner", None, "user_session"),
    "owner_visitor": (None, "v-owner", "visitor_session"),
    "other_user": ("other", None, "user_session"),
    "other_visitor": (None, "v-other", "visitor_session"),
    "operator": ("operator", None, "user_session"),
    "staff": ("staff", None, "visitor_session"),
    "anonymous": (None, None, "visitor_session"),
}
OWNERS = frozenset({"owner_user", "owner_visitor"})
# Staff status alone makes nobody an operator (STAFF_ARE_OPERATORS is False by default).
OPERATORS = frozenset({"operator"})


def client_as(world: SimpleNamespace, who: str, **kwargs: Any) -> tuple[Client, DurableSession]:
    username, visitor, target = IDENTITIES[who]
    client = Client(**kwargs)
    if username:
        client.force_login(getattr(world, username))
    if visitor:
        as_visitor(client, visitor)
    return client, getattr(world, target)


# --- permissions ----------------------------------------------------------------------------

# endpoint -> (method, URL name, body, who may, who sees the session but may not, success)
ENDPOINTS: dict[str, tuple[str, str, Any, frozenset[str], frozenset[str], int]] = {
    "retrieve": ("get", "session-detail", None, OWNERS | OPERATORS, frozenset(), 200),
    "messages_list": ("get", "session-messages", None, OWNERS | OPERATORS, frozenset(), 200),
    "messages_post": (
        "post",
        "session-messages",
        {"content": "hello"},
        OWNERS | OPERATORS,
        frozenset(),
        201,
    ),
    "events": ("get", "session-events", None, OWNERS | OPERATORS, frozenset(), 200),
    "handoff": ("post", "session-handoff", {"reason": "help"}, OWNERS, OPERATORS, 200),
    "take_over": ("post", "session-take-over", {}, OPERATORS, OWNERS, 200),
    "hand_back": ("post", "session-hand-back", {}, OPERATORS, OWNERS, 200),
    "transfer": ("post", "session-transfer", "operator2", OPERATORS, OWNERS, 200),
    "close": ("post", "session-close", {}, OPERATORS, OWNERS, 200),
    "cancel_reply": ("post", "session-cancel-reply", None, OWNERS | OPERATORS, frozenset(), 200),
}


@pytest.mark.parametrize("who", list(IDENTITIES))
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_permission_matrix_of_the_session_endpoints(world, endpoint, who):
    method, name, body, allowed, refused, ok = ENDPOINTS[endpoint]
    client, session = client_as(world, who)
    if endpoint in ("hand_back", "transfer"):
        # These need a session held by the operator who acts (or by someone).
        holder = getattr(world, who) if who in OPERATORS else world.operator
        service.take_over(session.pk, holder)
    if body == "operator2":
        body = {"to": world.operator2.pk}
    before = event_count(session)
    if method == "get":
        response = client.get(url(name, session))
    else:
        response = client.post(url(name, session), body, content_type=JSON)
    if who in allowed:
        assert response.status_code == ok, response.content
        assert "error" not in response.json()
        return
    expected = (403, "permission_denied") if who in refused else (404, "not_found")
    assert (response.status_code, error(response)["code"]) == expected
    assert event_count(session) == before, "a refused request changed the session"


@pytest.mark.parametrize(
    ("who", "titles"),
    [
        ("owner_user", {"by a user"}),
        ("owner_visitor", {"by a visitor"}),
        ("other_user", set()),
        ("other_visitor", set()),
        ("operator", {"by a user", "by a visitor"}),
        ("staff", set()),
        ("anonymous", set()),
    ],
)
def test_list_shows_own_sessions_and_all_to_operators(world, who, titles):
    client, _ = client_as(world, who)
    response = client.get(url("session-create"))
    assert response.status_code == 200
    page = response.json()
    assert {s["title"] for s in page["results"]} == titles
    assert page["count"] == len(titles)


@pytest.mark.parametrize("who", list(IDENTITIES))
def test_anyone_may_create_a_session_and_owns_it(world, who):
    client, _ = client_as(world, who)
    response = client.post(url("session-create"), {"title": "new"}, content_type=JSON)
    assert response.status_code == 201
    created = DurableSession.objects.get(pk=response.json()["id"])
    assert response.json() == wire.session_data(created)
    username, visitor, _ = IDENTITIES[who]
    if username:
        assert created.owner == getattr(world, username)
    else:
        assert created.owner is None and created.owner_visitor
        if visitor:
            assert created.owner_visitor == visitor
    # Only its creator sees it (and operators).
    assert client.get(url("session-detail", created)).status_code == 200
    assert Client().get(url("session-detail", created)).status_code == 404


def test_staff_are_operators_only_when_the_setting_says_so(world, settings):
    client, session = client_as(world, "staff")
    response = client.get(url("session-detail", session))
    assert (response.status_code, error(response)["code"]) == (404, "not_found")
    assert client.get(url("session-create")).json()["results"] == []
    settings.DURABLE_SESSIONS = {**settings.DURABLE_SESSIONS, "STAFF_ARE_OPERATORS": True}
    assert client.get(url("session-detail", session)).status_code == 200
    assert client.get(url("session-create")).json()["count"] == 2


def test_operators_filter_the_list(world):
    service.take_over(world.user_session.pk, world.operator)
    service.close_session(world.visitor_session.pk)
    client, _ = client_as(world, "operator")

    def titles(**query: Any) -> list[str]:
        response = client.get(url("session-create", **query))
        assert response.status_code == 200, response.content
        return [s["title"] for s in response.json()["results"]]

    assert titles(control="human") == ["by a user"]
    assert titles(status="closed") == ["by a visitor"]
    assert titles(assigned="me") == ["by a user"]
    assert titles(assigned="none") == ["by a visitor"]
    assert titles(control="queued") == []


def test_the_list_is_paged(world):
    client, _ = client_as(world, "operator")
    first = client.get(url("session-create", limit=1)).json()
    assert (first["count"], len(first["results"]), first["previous"]) == (2, 1, None)
    second = client.get(first["next"]).json()
    assert second["next"] is None and second["previous"]
    assert {first["results"][0]["id"], second["results"][0]["id"]} == {
        str(world.user_session.pk),
        str(world.visitor_session.pk),
    }


def test_handoff_actions_go_through_the_service(world):
    session = world.user_session
    owner, _ = client_as(world, "owner_user")
    operator, _ = client_as(world, "operator")
    asked = owner.post(url("session-handoff", session), {"reason": "a human"}, content_type=JSON)
    assert asked.status_code == 200
    assert asked.json()["changed"] and asked.json()["session"]["control"] == Control.QUEUED
    again = owner.post(url("session-handoff", session), content_type=JSON)
    assert again.status_code == 200 and not again.json()["changed"]

    taken = operator.post(url("session-take-over", session), content_type=JSON)
    assert taken.json()["session"]["assigned_operator_id"] == world.operator.pk
    second = Client()
    second.force_login(world.operator2)
    refused = second.post(url("session-take-over", session), content_type=JSON)
    assert (refused.status_code, error(refused)["code"]) == (409, "conflict")
    closing = second.post(url("session-close", session), content_type=JSON)
    assert (closing.status_code, error(closing)["code"]) == (409, "conflict")

    moved = operator.post(
        url("session-transfer", session), {"to": world.operator2.pk}, content_type=JSON
    )
    assert moved.json()["session"]["assigned_operator_id"] == world.operator2.pk
    back = second.post(url("session-hand-back", session), content_type=JSON)
    assert back.json()["session"]["control"] == Control.AI
    closed = operator.post(url("session-close", session), {"reason": "done"}, content_type=JSON)
    assert closed.json()["changed"] and closed.json()["session"]["status"] == Status.CLOSED
    twice = operator.post(url("session-close", session), content_type=JSON)
    assert twice.status_code == 200 and not twice.json()["changed"]
    types = list(Event.objects.filter(session=session).values_list("type", flat=True))
    assert types.count("control.changed") == 4 and types[-2:] == [
        "session.closed",
        "message.created",  # the closing notice
    ]


def test_cancel_reply_stops_the_ai_and_keeps_its_text(world):
    session = world.user_session
    reply = service.start_assistant_message(session.pk)
    service.append_delta(reply, "Half an ans")
    client, _ = client_as(world, "owner_user")
    response = client.post(url("session-cancel-reply", session))
    assert response.json() == {"cancelled": 1}
    message = Message.objects.get(pk=reply.pk)
    assert (message.state, message.content) == ("cancelled", "Half an ans")


def test_messages_are_listed_with_a_cursor_on_seq(world):
    session = world.user_session
    author = customer_of(session)
    seqs = [service.post_message(session.pk, author=author, content=f"m{i}").seq for i in range(5)]
    client, _ = client_as(world, "owner_user")
    page = client.get(url("session-messages", session, limit=2)).json()
    assert [m["content"] for m in page["messages"]] == ["m0", "m1"]
    assert page["next_after_seq"] == seqs[1]
    page = client.get(url("session-messages", session, after_seq=seqs[1], limit=2)).json()
    assert [m["content"] for m in page["messages"]] == ["m2", "m3"]
    page = client.get(url("session-messages", session, after_seq=seqs[3], limit=2)).json()
    assert [m["content"] for m in page["messages"]] == ["m4"]
    assert page["next_after_seq"] is None
    listed = {"version": 1, "versions": 1, "hidden_under": None}  # never edited
    assert page["messages"][0] == {
        **wire.message_data(Message.objects.get(seq=seqs[4])),
        **listed,
    }


def test_an_operator_message_takes_over_and_is_sent_as_the_operator(world):
    session = world.visitor_session
    client, _ = client_as(world, "operator")
    response = client.post(
        url("session-messages", session), {"content": "Hi, Olga here"}, content_type=JSON
    )
    assert response.status_code == 201
    assert response.json()["message"]["role"] == "operator"
    session.refresh_from_db()
    assert (session.control, session.assigned_operator_id) == (Control.HUMAN, world.operator.pk)


# --- idempotency ----------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["body", "header"])
def test_a_retried_post_is_stored_once(world, via):
    client, session = client_as(world, "owner_visitor")
    body: dict[str, Any] = {"content": "hello"}
    headers: dict[str, str] = {}
    if via == "body":
        body["client_id"] = "c-1"
    else:
        headers["Idempotency-Key"] = "c-1"
    first = client.post(url("session-messages", session), body, content_type=JSON, headers=headers)
    assert first.status_code == 201 and first.json()["duplicate"] is False
    events_after_first = event_count(session)
    retry = client.post(url("session-messages", session), body, content_type=JSON, headers=headers)
    assert retry.status_code == 200 and retry.json()["duplicate"] is True
    assert retry.json()["message"] == first.json()["message"]
    assert retry.json()["seq"] == first.json()["seq"]
    assert Message.objects.filter(session=session, client_id="c-1").count() == 1
    assert event_count(session) == events_after_first


def test_the_header_and_the_body_name_the_same_client_id(world):
    client, session = client_as(world, "owner_user")
    same = client.post(
        url("session-messages", session),
        {"content": "hello", "client_id": "k"},
        content_type=JSON,
        headers={"Idempotency-Key": "k"},
    )
    assert same.status_code == 201 and same.json()["message"]["client_id"] == "k"
    before = event_count(session)
    different = client.post(
        url("session-messages", session),
        {"content": "hello", "client_id": "k2"},
        content_type=JSON,
        headers={"Idempotency-Key": "k3"},
    )
    assert different.status_code == 400
    assert (error(different)["code"], error(different)["field"]) == ("invalid_field", "client_id")
    assert event_count(session) == before


@pytest.mark.parametrize("via", ["body", "header"])
def test_a_client_id_reused_for_other_content_is_a_conflict(world, via):
    client, session = client_as(world, "owner_user")

    def post(content: str) -> Any:
        if via == "body":
            return client.post(
                url("session-messages", session),
                {"content": content, "client_id": "c-1"},
                content_type=JSON,
            )
        return client.post(
            url("session-messages", session),
            {"content": content},
            content_type=JSON,
            headers={"Idempotency-Key": "c-1"},
        )

    assert post("first").status_code == 201
    before = event_count(session)
    conflict = post("second")
    assert (conflict.status_code, error(conflict)["code"]) == (409, "client_id_conflict")
    assert list(Message.objects.filter(session=session).values_list("content", flat=True)) == [
        "first"
    ]
    assert event_count(session) == before


def test_an_operator_retry_is_stored_once(world):
    client, session = client_as(world, "operator")
    body = {"content": "on it", "client_id": "op-1"}
    assert client.post(url("session-messages", session), body, content_type=JSON).status_code == 201
    service.hand_back(session.pk, world.operator)
    before = event_count(session)
    retry = client.post(url("session-messages", session), body, content_type=JSON)
    assert retry.status_code == 200 and retry.json()["duplicate"] is True
    assert Message.objects.filter(session=session, client_id="op-1").count() == 1
    # The retry did not take the session over again.
    session.refresh_from_db()
    assert session.control == Control.AI and event_count(session) == before


# --- CSRF and tokens ------------------------------------------------------------------------


def test_an_anonymous_post_without_a_csrf_token_is_refused(world):
    client = Client(enforce_csrf_checks=True)
    count = DurableSession.objects.count()
    response = client.post(url("session-create"), {"title": "x"}, content_type=JSON)
    assert (response.status_code, error(response)["code"]) == (403, "csrf_failed")
    assert DurableSession.objects.count() == count


def test_a_client_gets_the_csrf_cookie_from_the_list_and_then_posts(world):
    client = Client(enforce_csrf_checks=True)
    assert client.get(url("session-create")).status_code == 200
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    created = client.post(
        url("session-create"), {"title": "x"}, content_type=JSON, headers={"X-CSRFToken": token}
    )
    assert created.status_code == 201
    session = DurableSession.objects.get(pk=created.json()["id"])
    # The new visitor's next unsafe request needs the token too.
    refused = client.post(url("session-messages", session), {"content": "hi"}, content_type=JSON)
    assert (refused.status_code, error(refused)["code"]) == (403, "csrf_failed")
    posted = client.post(
        url("session-messages", session),
        {"content": "hi"},
        content_type=JSON,
        headers={"X-CSRFToken": token},
    )
    assert posted.status_code == 201
    assert Message.objects.filter(session=session).count() == 1


@pytest.mark.parametrize(
    ("who", "endpoint", "body"),
    [
        ("owner_visitor", "session-messages", {"content": "hi"}),
        ("owner_visitor", "session-handoff", {}),
        ("owner_user", "session-messages", {"content": "hi"}),
        ("operator", "session-take-over", {}),
        ("operator", "session-close", {}),
    ],
)
def test_every_cookie_authenticated_write_needs_the_csrf_token(world, who, endpoint, body):
    client, session = client_as(world, who, enforce_csrf_checks=True)
    before = event_count(session)
    response = client.post(url(endpoint, session), body, content_type=JSON)
    assert (response.status_code, error(response)["code"]) == (403, "csrf_failed")
    assert event_count(session) == before
    # Reads need none.
    assert client.get(url("session-detail", session)).status_code == 200


def test_a_token_needs_no_csrf_token(world):
    token = Token.objects.create(user=world.owner)
    client = Client(enforce_csrf_checks=True)
    auth = {"Authorization": f"Token {token.key}"}
    created = client.post(url("session-create"), {"title": "t"}, content_type=JSON, headers=auth)
    assert created.status_code == 201
    assert DurableSession.objects.get(pk=created.json()["id"]).owner == world.owner
    posted = client.post(
        url("session-messages", world.user_session),
        {"content": "hi"},
        content_type=JSON,
        headers=auth,
    )
    assert posted.status_code == 201
    listed = client.get(url("session-create"), headers=auth).json()["results"]
    assert {s["title"] for s in listed} == {"t", "by a user"}


def test_a_token_request_is_its_user_only(world):
    """A token request does not also act as the visitor whose cookie it carries."""
    token = Token.objects.create(user=world.other)
    client = as_visitor(Client(), "v-owner")
    response = client.get(
        url("session-detail", world.visitor_session),
        headers={"Authorization": f"Token {token.key}"},
    )
    assert (response.status_code, error(response)["code"]) == (404, "not_found")


def test_a_bad_token_is_refused(world):
    response = Client().get(url("session-create"), headers={"Authorization": "Token nope"})
    assert (response.status_code, error(response)["code"]) == (401, "authentication_failed")
    assert response["WWW-Authenticate"] == "Token"


def test_the_api_works_without_the_token_app(world, settings):
    settings.INSTALLED_APPS = [
        a for a in settings.INSTALLED_APPS if a != "rest_framework.authtoken"
    ]
    client, session = client_as(world, "owner_user")
    assert client.get(url("session-detail", session)).status_code == 200
    schema = Client().get(url("api-schema"), {"format": "json"}).json()
    assert "tokenAuth" not in schema["components"]["securitySchemes"]


# --- bad input ------------------------------------------------------------------------------

LONG_CLIENT_ID = json.dumps({"content": "x", "client_id": "c" * 65}).encode()
FORM = "application/x-www-form-urlencoded"
INVALID = "invalid_field"
MSG, HANDOFF, TRANSFER = "session-messages", "session-handoff", "session-transfer"
BAD_POSTS = [
    # (description, URL name, raw body, content type, status, code, field)
    ("malformed JSON", MSG, b'{"content": "hi"', JSON, 400, "bad_json", None),
    ("not an object", MSG, b'["hi"]', JSON, 400, "bad_request", None),
    ("missing content", MSG, b"{}", JSON, 400, "invalid_field", "content"),
    ("content a number", MSG, b'{"content": 5}', JSON, 400, "invalid_field", "content"),
    ("content blank", MSG, b'{"content": "  "}', JSON, 400, "invalid_field", "content"),
    ("content with NUL", MSG, b'{"content": "a\\u0000"}', JSON, 400, "invalid_field", "content"),
    ("unknown field", MSG, b'{"content": "x", "x": 1}', JSON, 400, "invalid_field", "x"),
    ("client_id too long", MSG, LONG_CLIENT_ID, JSON, 400, "invalid_field", "client_id"),
    ("client_id a number", MSG, b'{"content":"x","client_id":7}', JSON, 400, INVALID, "client_id"),
    ("a form", MSG, b"content=hi", FORM, 415, "unsupported_media_type", None),
    ("reason a list", HANDOFF, b'{"reason": []}', JSON, 400, "invalid_field", "reason"),
    ("transfer without to", TRANSFER, b"{}", JSON, 400, "invalid_field", "to"),
    ("transfer to a string", TRANSFER, b'{"to": "2"}', JSON, 400, "invalid_field", "to"),
    ("transfer to nobody", TRANSFER, b'{"to": 999999}', JSON, 400, "invalid_field", "to"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "body", "content_type", "status", "code", "field"),
    [case[1:] for case in BAD_POSTS],
    ids=[case[0] for case in BAD_POSTS],
)
def test_bad_input_gets_the_error_shape_and_stores_nothing(
    world, name, body, content_type, status, code, field
):
    session = world.user_session
    who = "owner_user" if name in ("session-messages", "session-handoff") else "operator"
    client, _ = client_as(world, who)
    if name == "session-transfer":
        service.take_over(session.pk, world.operator)
    before, messages = event_count(session), Message.objects.count()
    response = client.post(url(name, session), body, content_type=content_type)
    assert response.status_code == status, response.content
    got = error(response)
    assert (got["code"], got.get("field")) == (code, field)
    assert (event_count(session), Message.objects.count()) == (before, messages)


def test_a_session_title_must_be_a_short_string(world):
    client = Client()
    for body, message in (({"title": 5}, "title"), ({"title": "x" * 201}, "title")):
        response = client.post(url("session-create"), body, content_type=JSON)
        assert (response.status_code, error(response)["field"]) == (400, message)
    assert DurableSession.objects.count() == 2


@pytest.mark.parametrize(
    ("name", "query", "field"),
    [
        ("session-messages", {"after_seq": -1}, "after_seq"),
        ("session-messages", {"limit": 0}, "limit"),
        ("session-messages", {"limit": "many"}, "limit"),
        ("session-events", {"after_seq": "x"}, "after_seq"),
        ("session-events", {"limit": 1001}, "limit"),
        ("session-events", {"wait": 31}, "wait"),
        ("session-events", {"wait": "soon"}, "wait"),
        ("session-create", {"control": "robot"}, "control"),
        ("session-create", {"assigned": "them"}, "assigned"),
    ],
)
def test_bad_query_parameters_are_named(world, name, query, field):
    client, session = client_as(world, "operator")
    target = None if name == "session-create" else session
    response = client.get(url(name, target, **query))
    assert response.status_code == 400
    assert (error(response)["code"], error(response)["field"]) == ("invalid_field", field)


@pytest.mark.parametrize("session_id", [str(uuid.uuid4()), "not-a-uuid"])
@pytest.mark.parametrize("name", ["session-detail", "session-messages", "session-events"])
def test_an_unknown_session_is_not_found(world, session_id, name):
    client, _ = client_as(world, "operator")
    response = client.get(url(name, session_id))
    assert (response.status_code, error(response)["code"]) == (404, "not_found")
    posted = client.post(url("session-messages", session_id), {"content": "x"}, content_type=JSON)
    assert (posted.status_code, error(posted)["code"]) == (404, "not_found")
    assert not Message.objects.exists()


def test_other_methods_are_not_allowed(world):
    client, session = client_as(world, "owner_user")
    response = client.delete(url("session-detail", session))
    assert (response.status_code, error(response)["code"]) == (405, "method_not_allowed")
    assert response["Allow"]
    refused = client.get(url("session-handoff", session))
    assert (refused.status_code, error(refused)["code"]) == (405, "method_not_allowed")


def test_a_closed_session_takes_no_message(world):
    service.close_session(world.user_session.pk)
    client, session = client_as(world, "owner_user")
    response = client.post(url("session-messages", session), {"content": "hi"}, content_type=JSON)
    assert (response.status_code, error(response)["code"]) == (409, "session_closed")


# RateLimited carries retry_after, which frames of the websocket's own checks do not:
# tests/test_limits.py covers it.
@pytest.mark.parametrize(
    "error_class", [c for c in ServiceError.__subclasses__() if c is not RateLimited]
)
def test_a_service_error_answers_its_own_status_with_the_shared_payload(error_class):
    """The status is the error class's; the body is the payload websocket frames carry."""
    raised = (
        error_class("content", "is blank")
        if error_class is InvalidInput
        else error_class("not now")
    )
    response = exception_handler(raised, {})
    assert response is not None and response.status_code == error_class.status_code
    assert 400 <= response.status_code < 500
    assert response.data == {"error": raised.payload()}
    frame = FrameError(raised.code, raised.message, field=raised.field, ref="r1").as_frame()
    assert frame == {"type": "error", **raised.payload(ref="r1")}


# --- OpenAPI --------------------------------------------------------------------------------


def test_the_schema_is_valid_openapi_3_and_lists_every_endpoint(db):
    response = Client().get(url("api-schema"))
    assert response.status_code == 200
    schema = json.loads(response.content)
    validate(schema)
    assert schema["openapi"].startswith("3.")
    prefix = url("session-create")
    session_path = prefix + "{session_id}/"
    # The console's notes endpoint is built on the same base class, so it is listed too.
    notes_path = unquote(reverse("handoff_console:api-notes", args=["{session_id}"]))
    brief_path = unquote(reverse("handoff_console:api-brief", args=["{session_id}"]))
    read_path = unquote(reverse("handoff_console:api-read", args=["{session_id}"]))
    assert set(schema["paths"]) == {
        prefix,
        session_path,
        *(
            f"{session_path}{tail}/"
            for tail in (
                "messages",
                "events",
                "handoff",
                "take-over",
                "hand-back",
                "transfer",
                "close",
                "rating",
                "cancel-reply",
                "devices",
                "erase-customer",
            )
        ),
        session_path + "devices/{grant_id}/",
        session_path + "approvals/{approval_id}/",
        *(
            f"{session_path}messages/{{message_id}}/{tail}/"
            for tail in ("edit", "regenerate", "activate")
        ),
        url("device-redeem"),
        # The session as a Durable Stream, described by hand (docs/durable-streams.md).
        "/v1/session/{session_id}",
        notes_path,
        brief_path,
        read_path,
        reverse("handoff_console:api-replies"),
        unquote(reverse("handoff_console:api-transfer-team", args=["{session_id}"])),
        reverse("handoff_console:api-availability"),
        reverse("handoff_console:api-operators"),
    }
    operations = {op["operationId"] for item in schema["paths"].values() for op in item.values()}
    assert {"sessions_list", "sessions_create", "messages_create", "events_list"} <= operations
    console = {"notes_list", "notes_create", "brief_read", "read_mark", "canned_replies_list"}
    assert console <= operations
    # A cookie write needs the CSRF header there too.
    assert {"cookieAuth": [], "csrfToken": []} in schema["paths"][notes_path]["post"]["security"]
    assert {"cookieAuth", "csrfToken", "tokenAuth"} <= set(schema["components"]["securitySchemes"])
    # The documented shapes are the ones the API returns.
    components = schema["components"]["schemas"]
    sample = service.create_session(visitor="v")
    message = service.post_message(sample.pk, author=customer_of(sample), content="x").message
    assert set(components["Session"]["properties"]) == set(wire.session_data(sample))
    assert set(components["Message"]["properties"]) == set(wire.message_data(message))
    assert set(components["Event"]["properties"]) == set(read_events(sample.pk, 0)[0])
    yaml = Client().get(url("api-schema"), {"format": "yaml"})
    assert yaml.status_code == 200 and b"openapi: 3" in yaml.content


def test_the_schema_needs_no_global_rest_framework_setting(db, settings):
    """A host whose DRF defaults differ still gets a working API and schema."""
    settings.REST_FRAMEWORK = {
        "DEFAULT_SCHEMA_CLASS": "rest_framework.schemas.openapi.AutoSchema",
        "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.BrowsableAPIRenderer"],
    }
    schema = Client().get(url("api-schema"), {"format": "json"}).json()
    validate(schema)
    response = Client().post(url("session-create"), {}, content_type=JSON)
    assert response.status_code == 201 and response["Content-Type"] == JSON


def test_the_docs_page_needs_no_cdn(db):
    response = Client().get(url("api-docs"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    for path in ("sessions/", "{session_id}/events/", "{session_id}/take-over/"):
        assert path in page
    assert "<script" not in page
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert links and all(not re.match(r"(https?:)?//", link) for link in links), links


# --- long polling and the websocket (async, real transactions) ------------------------------


async def logged_in(user: Any) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


@pytest.mark.django_db(transaction=True)
async def test_a_long_poll_returns_as_soon_as_an_event_is_committed():
    owner = await db(make_user)("owner")
    session = await service.acreate_session(owner=owner)
    author = await db(customer_of)(session)
    client = await logged_in(owner)

    async def post_later() -> None:
        await asyncio.sleep(0.3)
        await service.apost_message(session.pk, author=author, content="hi there")

    poster = asyncio.create_task(post_later())
    started = time.monotonic()
    response = await client.get(url("session-events", session, after_seq=1, wait=30))
    elapsed = time.monotonic() - started
    await poster
    assert response.status_code == 200
    events = response.json()["events"]
    assert [(e["seq"], e["type"]) for e in events] == [(2, "message.created")]
    assert events[0]["data"]["message"]["content"] == "hi there"
    # Woken by the commit, not by the read at the end of the wait.
    assert elapsed < 20
    # The request left the session's group.
    assert not get_channel_layer().groups.get(session_group(session.pk))


@pytest.mark.django_db(transaction=True)
async def test_a_long_poll_returns_empty_when_nothing_happens():
    owner = await db(make_user)("owner")
    session = await service.acreate_session(owner=owner)
    client = await logged_in(owner)
    response = await client.get(url("session-events", session, after_seq=1, wait=1))
    assert response.status_code == 200
    assert response.json()["events"] == [] and response.json()["more"] is False
    assert not get_channel_layer().groups.get(session_group(session.pk))


@pytest.mark.django_db(transaction=True)
async def test_a_waiting_long_poll_does_not_hold_up_other_requests():
    owner = await db(make_user)("owner")
    session = await service.acreate_session(owner=owner, title="busy")
    client = await logged_in(owner)
    waiting = asyncio.create_task(client.get(url("session-events", session, after_seq=1, wait=10)))
    await asyncio.sleep(0.3)
    # Sync views and the service run on the thread the long poll does not occupy.
    other = await client.get(url("session-detail", session))
    assert other.status_code == 200 and other.json()["title"] == "busy"
    posted = await client.post(
        url("session-messages", session), {"content": "hi"}, content_type=JSON
    )
    assert posted.status_code == 201
    response = await waiting
    assert [e["seq"] for e in response.json()["events"]] == [posted.json()["seq"]]


@pytest.mark.django_db(transaction=True)
async def test_a_long_poll_is_refused_like_any_read():
    owner = await db(make_user)("owner")
    session = await service.acreate_session(owner=owner)
    response = await AsyncClient().get(url("session-events", session, wait=5))
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert not get_channel_layer().groups.get(session_group(session.pk))


@pytest.mark.django_db(transaction=True)
async def test_http_events_equal_the_websocket_replay_and_live_frames():
    owner = await db(make_user)("owner")
    operator = await db(make_user)("operator", operator=True)
    session = await service.acreate_session(owner=owner, title="both transports")
    customer, staff = await logged_in(owner), await logged_in(operator)
    await customer.post(url("session-messages", session), {"content": "hello"}, content_type=JSON)

    comm, opening = await open_ws(session.pk, user=owner)
    replayed = [f for f in opening if "seq" in f and f["type"] != "live"]
    # Writes over HTTP reach the websocket as the same events.
    writes = [
        (customer, "session-messages", {"content": "a human, please", "client_id": "c2"}),
        (customer, "session-handoff", {"reason": "billing"}),
        (staff, "session-take-over", {}),
        (staff, "session-messages", {"content": "Olga here"}),
        (staff, "session-close", {"reason": "solved"}),
    ]
    for client, name, body in writes:
        response = await client.post(url(name, session), body, content_type=JSON)
        assert response.status_code in (200, 201), response.content
    last_seq = (await DurableSession.objects.aget(pk=session.pk)).last_seq
    live = []
    while not live or live[-1]["seq"] < last_seq:
        live.append(await recv(comm))
    await comm.disconnect()

    http = (await customer.get(url("session-events", session, after_seq=0))).json()
    assert http["more"] is False
    assert http["events"] == replayed + live
    assert [e["seq"] for e in http["events"]] == list(range(1, last_seq + 1))
    # The same after any seq, as a resuming websocket would get it.
    after = (await customer.get(url("session-events", session, after_seq=3, limit=2))).json()
    assert after["events"] == (replayed + live)[3:5] and after["more"] is True


@pytest.mark.django_db(transaction=True)
async def test_an_anonymous_visitor_long_polls_with_their_cookie():
    store = await db(visitor_session)("v-poll")
    session = await service.acreate_session(visitor="v-poll")
    client = AsyncClient()
    client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
    response = await client.get(url("session-events", session, wait=0))
    assert [e["type"] for e in response.json()["events"]] == ["session.created"]


@pytest.mark.parametrize("kind", ["pubsub", "core"])
@pytest.mark.django_db(transaction=True)
async def test_a_long_poll_is_woken_through_redis(redis_url, settings, monkeypatch, kind):
    from channels.layers import channel_layers

    from project.env import channel_layers_from_url

    monkeypatch.setenv("REDIS_LAYER", kind)
    settings.CHANNEL_LAYERS = channel_layers_from_url(redis_url)
    channel_layers.backends.clear()
    owner = await db(make_user)("owner")
    session = await service.acreate_session(owner=owner)
    author = await db(customer_of)(session)
    client = await logged_in(owner)
    for n in (1, 2):  # a second poll works as well: the first left nothing behind
        poll = asyncio.create_task(client.get(url("session-events", session, after_seq=n, wait=30)))
        await asyncio.sleep(0.5)
        posted = await service.apost_message(session.pk, author=author, content=f"m{n}")
        response = await asyncio.wait_for(poll, 20)
        assert [e["seq"] for e in response.json()["events"]] == [posted.seq]


@pytest.mark.django_db(transaction=True)
async def test_a_long_poll_without_its_channel_layer_reads_the_database_instead(
    monkeypatch, caplog
):
    """Redis away: the long poll answers JSON, with the event, not an HTML 500."""
    owner = await db(make_user)("owner")
    session = await service.acreate_session(owner=owner)
    author = await db(customer_of)(session)
    client = await logged_in(owner)
    layer = get_channel_layer()

    async def unreachable(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(layer, "new_channel", unreachable)

    async def post_later() -> None:
        await asyncio.sleep(0.3)
        await service.apost_message(session.pk, author=author, content="still here")

    poster = asyncio.create_task(post_later())
    response = await client.get(url("session-events", session, after_seq=1, wait=10))
    await poster
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert [e["seq"] for e in response.json()["events"]] == [2]
    assert "long poll without wake-ups" in caplog.text

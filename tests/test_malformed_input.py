"""Malformed input gets a clear 4xx or error frame, stores nothing and logs no traceback.

Deeply nested JSON, integers out of a database's range, non-finite numbers, lone UTF-16
surrogates (which no UTF-8 database or socket can carry), oversized frames and unknown
websocket paths.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.test import Client
from django.urls import reverse

from durable_sessions import service
from durable_sessions.errors import InvalidInput
from durable_sessions.models import DurableSession, Event, Message, ParticipantKind
from durable_sessions.routing import websocket_urlpatterns as session_routes
from handoff_console.models import OperatorNote
from handoff_console.routing import websocket_urlpatterns as console_routes
from tests.factories import anonymous_session, make_user, open_ws, recv

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async
JSON = "application/json"
NESTED = b"[" * 972 + b"]" * 972
DEEP = b'{"a":' * 5000 + b"1" + b"}" * 5000
SURROGATE = '"\\ud800"'  # a JSON escape that decodes to a lone surrogate


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def api(name: str, session: Any = None) -> str:
    if name == "notes":
        return reverse("handoff_console:api-notes", args=[session.pk])
    args = [session.pk] if session is not None else []
    return reverse(f"durable_sessions:{name}", args=args)


def error_of(response: Any) -> dict[str, Any]:
    # The body must be UTF-8: a lone surrogate echoed back would make it unencodable.
    body = json.loads(response.content.decode("utf-8"))
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]) <= {"code", "message", "field"}, body
    return body["error"]


def stored() -> tuple[int, int, int, int]:
    return (
        DurableSession.objects.count(),
        Event.objects.count(),
        Message.objects.count(),
        OperatorNote.objects.count(),
    )


@pytest.fixture
def held():
    """A session held by an operator, the operator's client and its owner's client."""
    operator = make_user("olga", operator=True)
    make_user("omar", operator=True)
    session, store = anonymous_session()
    service.take_over(session.pk, operator)
    op = Client()
    op.force_login(operator)
    owner = Client()
    owner.cookies["sessionid"] = store.session_key
    return session, op, owner


# (URL name, who posts): every endpoint that takes a JSON body.
POSTS = [
    ("session-create", "owner"),
    ("session-messages", "owner"),
    ("session-handoff", "owner"),
    ("session-messages", "operator"),
    ("session-take-over", "operator"),
    ("session-hand-back", "operator"),
    ("session-transfer", "operator"),
    ("session-close", "operator"),
    ("notes", "operator"),
]


def post(held: Any, name: str, who: str, body: bytes) -> Any:
    session, op, owner = held
    client = op if who == "operator" else owner
    target = None if name == "session-create" else session
    return client.post(api(name, target), body, content_type=JSON)


@pytest.mark.parametrize("body", [NESTED, DEEP], ids=["972-levels", "5000-levels"])
@pytest.mark.parametrize(("name", "who"), POSTS)
def test_deeply_nested_json_is_bad_json(held, name, who, body):
    before = stored()
    response = post(held, name, who, body)
    assert response.status_code == 400, response.content[:200]
    assert error_of(response)["code"] == "bad_json"
    assert stored() == before


def test_a_body_larger_than_the_upload_limit_is_too_large(held, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    before = stored()
    response = post(held, "session-messages", "owner", json.dumps({"content": "x" * 2000}).encode())
    assert response.status_code == 413
    assert error_of(response)["code"] == "too_large"
    assert stored() == before


# (URL name, who, body, field): a lone surrogate in every text field.
SURROGATES = [
    ("session-create", "owner", f'{{"title": {SURROGATE}}}', "title"),
    ("session-messages", "owner", f'{{"content": {SURROGATE}}}', "content"),
    ("session-messages", "owner", '{"content": "a\\udfffb"}', "content"),
    ("session-messages", "owner", f'{{"content": "x", "client_id": {SURROGATE}}}', "client_id"),
    ("session-handoff", "owner", f'{{"reason": {SURROGATE}}}', "reason"),
    ("session-messages", "operator", f'{{"content": {SURROGATE}}}', "content"),
    ("session-hand-back", "operator", f'{{"reason": {SURROGATE}}}', "reason"),
    ("session-close", "operator", f'{{"reason": {SURROGATE}}}', "reason"),
    ("notes", "operator", f'{{"text": {SURROGATE}}}', "text"),
]


@pytest.mark.parametrize(("name", "who", "body", "field"), SURROGATES)
def test_lone_surrogates_are_an_invalid_field(held, name, who, body, field):
    before = stored()
    response = post(held, name, who, body.encode())
    assert response.status_code == 400, response.content[:300]
    assert (error_of(response)["code"], error_of(response).get("field")) == (
        "invalid_field",
        field,
    )
    assert stored() == before


def test_an_unknown_field_named_with_a_surrogate_is_refused_in_utf8(held):
    before = stored()
    response = post(
        held, "session-messages", "owner", f'{{"content": "x", {SURROGATE}: 1}}'.encode()
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_field"
    assert stored() == before


def test_the_service_refuses_lone_surrogates_too():
    session, _ = anonymous_session()
    author = service.participant_for(session.pk, ParticipantKind.CUSTOMER)
    with pytest.raises(InvalidInput) as raised:
        service.post_message(session.pk, author=author, content="a\ud800", client_id=None)
    assert raised.value.field == "content"


@pytest.mark.parametrize(
    ("to", "code"),
    [
        ("1e400", "invalid_field"),
        ("-1e400", "invalid_field"),
        ("2.0", "invalid_field"),
        ("9223372036854775808", "invalid_field"),
        ("-9223372036854775809", "invalid_field"),
        ("100000000000000000000000000000000000000", "invalid_field"),
        ("-Infinity", "bad_json"),
        ("Infinity", "bad_json"),
        ("NaN", "bad_json"),
    ],
)
def test_transfer_to_a_number_that_is_no_user_id(held, to, code):
    session = held[0]
    response = post(held, "session-transfer", "operator", f'{{"to": {to}}}'.encode())
    assert response.status_code == 400, response.content[:300]
    error = error_of(response)
    assert (error["code"], error.get("field")) == (code, "to" if code == "invalid_field" else None)
    assert DurableSession.objects.get(pk=session.pk).assigned_operator.username == "olga"


BIG = "9223372036854775808"


@pytest.mark.parametrize(
    ("name", "query", "field"),
    [
        ("session-create", {"offset": BIG}, "offset"),
        ("session-create", {"offset": "9" * 40}, "offset"),
        ("session-create", {"limit": BIG}, "limit"),
        ("session-messages", {"after_seq": BIG}, "after_seq"),
        ("session-events", {"after_seq": BIG}, "after_seq"),
        ("session-events", {"limit": BIG}, "limit"),
        ("session-events", {"wait": "nan"}, "wait"),
        ("session-events", {"wait": "inf"}, "wait"),
        ("session-events", {"wait": "1e400"}, "wait"),
    ],
)
def test_query_integers_out_of_range_are_an_invalid_field(held, name, query, field):
    session, op, _ = held
    target = None if name == "session-create" else session
    response = op.get(api(name, target), query)
    assert response.status_code == 400, response.content[:300]
    assert (error_of(response)["code"], error_of(response)["field"]) == ("invalid_field", field)


def test_the_largest_offset_and_after_seq_are_empty_pages(held):
    session, op, _ = held
    top = str(2**63 - 1)
    listed = op.get(api("session-create"), {"offset": top})
    assert listed.status_code == 200 and listed.json()["results"] == []
    messages = op.get(api("session-messages", session), {"after_seq": top})
    assert messages.status_code == 200 and messages.json()["messages"] == []


# --- websocket frames -------------------------------------------------------------------------


async def send_raw(comm: WebsocketCommunicator, text: str) -> dict[str, Any]:
    """Send ``text`` and return the error frame, checking that it is valid UTF-8."""
    await comm.send_to(text_data=text)
    while True:
        raw = await comm.receive_from(timeout=5)
        raw.encode("utf-8")  # a lone surrogate would fail here (and close with 1011 in Daphne)
        frame = json.loads(raw)
        if frame["type"] not in ("agent.status", "presence"):
            return frame


async def last_seq(session: DurableSession) -> int:
    return (await DurableSession.objects.aget(pk=session.pk)).last_seq


BAD_TEXT_FRAMES = [
    # (frame text, code, field, ref)
    (f'{{"type": "ping", "ref": {SURROGATE}}}', "bad_frame", "ref", None),
    (
        f'{{"type": "message.send", "content": {SURROGATE}, "client_id": "c", "ref": "r"}}',
        "invalid_field",
        "content",
        "r",
    ),
    (
        f'{{"type": "message.send", "content": "x", "client_id": {SURROGATE}, "ref": 4}}',
        "invalid_field",
        "client_id",
        4,
    ),
    (f'{{"type": "handoff.request", "reason": {SURROGATE}}}', "invalid_field", "reason", None),
    (f'{{"type": "typing", "state": {SURROGATE}}}', "invalid_field", "state", None),
    (f'{{"type": {SURROGATE}}}', "unknown_type", "type", None),
    (f'{{"type": "ping", {SURROGATE}: 1}}', "invalid_field", None, None),
    ("[" * 972 + "]" * 972, "bad_json", None, None),
    ('{"type": "ping", "x":' + "[" * 100 + "]" * 100 + "}", "bad_json", None, None),
    ('{"type": "ping", "ref": 1e400}', "invalid_field", "ref", None),
    ('{"type": "ping", "ref": NaN}', "bad_json", None, None),
]


@pytest.mark.parametrize(("text", "code", "field", "ref"), BAD_TEXT_FRAMES)
async def test_bad_text_in_a_frame_gets_an_error_frame_in_utf8(text, code, field, ref):
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    before = await last_seq(session)
    error = await send_raw(comm, text)
    assert error["type"] == "error" and error["code"] == code, error
    if field is not None:
        assert error.get("field") == field, error
    assert error.get("ref") == ref, error
    await comm.send_json_to({"type": "ping", "ref": "p"})
    assert await recv(comm) == {"type": "pong", "ref": "p"}
    assert await last_seq(session) == before
    await comm.disconnect()


@pytest.mark.parametrize(
    ("ref_json", "ref"),
    [
        ('"big-1"', "big-1"),
        ("42", 42),
        ('"a\\"b"', 'a"b'),
        (SURROGATE, None),
        ('"' + "r" * 65 + '"', None),
    ],
)
async def test_a_frame_too_large_still_names_its_ref(ref_json, ref):
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    text = (
        f'{{"type": "message.send", "ref": {ref_json}, "client_id": "c1", '
        f'"content": "{"x" * 70_000}"}}'
    )
    error = await send_raw(comm, text)
    assert error["code"] == "too_large" and error.get("ref") == ref, error
    assert await last_seq(session) == 1
    await comm.disconnect()


async def test_a_ref_after_the_content_of_a_frame_too_large_is_not_searched_for():
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    text = f'{{"type": "message.send", "content": "{"x" * 70_000}", "ref": "late"}}'
    error = await send_raw(comm, text)
    assert error["code"] == "too_large" and "ref" not in error
    await comm.disconnect()


# --- unknown websocket paths ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws/nope/", "/", "/ws/sessions/", "/ws/console/x/"])
async def test_an_unknown_websocket_path_is_closed_with_4404(path, caplog):
    from durable_sessions.routing import websocket_router

    app = websocket_router(session_routes + console_routes)
    comm = WebsocketCommunicator(app, path)
    comm.scope["user"] = AnonymousUser()
    connected, code = await comm.connect()
    if connected:
        assert (await comm.receive_output(timeout=2)) == {"type": "websocket.close", "code": 4404}
    else:
        assert code == 4404
    assert not [r for r in caplog.records if r.exc_info]
    await comm.wait()


async def test_the_router_still_reaches_every_route():
    session, store = await db(anonymous_session)()
    from durable_sessions.routing import websocket_router

    app = websocket_router(session_routes + console_routes)
    comm = WebsocketCommunicator(app, f"/ws/sessions/{session.id}/")
    comm.scope["user"] = AnonymousUser()
    comm.scope["session"] = store
    connected, _ = await comm.connect()
    assert connected
    assert (await comm.receive_json_from(timeout=5))["type"] == "snapshot"
    await comm.disconnect()


# --- names ------------------------------------------------------------------------------------


def test_display_names_lose_their_bidi_controls():
    from durable_sessions.adapter import SessionAdapter

    user = make_user("olga")
    user.first_name, user.last_name = "Olga\u202e", "\u2066Smith\u2069\u200f"
    assert SessionAdapter().display_name(user) == "Olga Smith"
    user.first_name = user.last_name = "\u202e"
    user.username = "\u202eolga"
    assert SessionAdapter().display_name(user) == "olga"

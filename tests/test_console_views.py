"""The handoff console: pages, permissions, actions, private notes, the claim race, the feed.

The console's actions are the REST API's endpoints (``durable_sessions.urls``), and its
private notes an endpoint of its own on the same base class; both are tested here as the
console's script calls them.
"""

from __future__ import annotations

import asyncio
import json
import threading
from io import StringIO
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.core.management import CommandError, call_command
from django.db import close_old_connections, transaction
from django.test import Client
from django.urls import NoReverseMatch, reverse

from durable_sessions import service
from durable_sessions.errors import Conflict, NotInControl
from durable_sessions.models import (
    Control,
    DurableSession,
    HandoffRecord,
    Message,
    MessageState,
    ParticipantKind,
    Status,
)
from handoff_console import consumers as console_consumers
from handoff_console.models import OperatorNote
from handoff_console.notes import add_note
from handoff_console.permissions import is_operator
from handoff_console.routing import websocket_urlpatterns as console_routes
from tests.factories import anonymous_session, make_user, open_ws

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async
feed_app = URLRouter(console_routes)

MARKUP = "<img src=x onerror=alert(1)> <script>alert(1)</script>"


# --- helpers --------------------------------------------------------------------------------


def client_for(user: Any = None, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    if user is not None:
        client.force_login(user)
    return client


def customer(session: DurableSession):
    return service.participant_for(session.id, ParticipantKind.CUSTOMER)


def queued_session(reason: str = "wants a refund", summary: str = "Customer wrote: refund"):
    session, store = anonymous_session()
    service.request_handoff(session.id, by=customer(session), reason=reason, summary=summary)
    return session, store


# The console's actions -> their URL names (the page's config.api carries the same URLs).
ACTION_ROUTES = {
    "take_over": "durable_sessions:session-take-over",
    "hand_back": "durable_sessions:session-hand-back",
    "transfer": "durable_sessions:session-transfer",
    "close": "durable_sessions:session-close",
    "messages": "durable_sessions:session-messages",
    "notes": "handoff_console:api-notes",
    "brief": "handoff_console:api-brief",
    "read": "handoff_console:api-read",
    "transfer_team": "handoff_console:api-transfer-team",
}
OPERATOR_ACTIONS = ("take_over", "hand_back", "transfer", "close", "notes")


def action_url(name: str, session: DurableSession | str) -> str:
    session_id = session.id if isinstance(session, DurableSession) else session
    return reverse(ACTION_ROUTES[name], args=[session_id])


def post(client: Client, url: str, body: dict[str, Any] | None = None, **extra: Any):
    return client.post(url, json.dumps(body or {}), content_type="application/json", **extra)


def error_of(response) -> dict[str, Any]:
    data = response.json()
    assert set(data) == {"error"}, data
    assert {"code", "message"} <= set(data["error"]) <= {"code", "message", "field"}, data
    return data["error"]


# --- pages and access -----------------------------------------------------------------------


def test_anonymous_users_are_sent_to_the_login_page():
    session, _ = anonymous_session()
    for url in (
        reverse("handoff_console:queue"),
        reverse("handoff_console:session", args=[session.id]),
    ):
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=")


def test_customers_and_other_users_get_403_on_pages_and_no_operator_action():
    session, store = queued_session()
    owner = make_user("alice")
    owned = service.create_session(owner=owner, title="mine")
    # The owner sees their session but may not act as an operator (403); anyone else is
    # told the session does not exist (404), as everywhere in the API.
    for client, target, refused in (
        (client_for(owner), owned, (403, "permission_denied")),
        (client_for(make_user("mallory")), session, (404, "not_found")),
    ):
        assert client.get(reverse("handoff_console:queue")).status_code == 403
        assert client.get(reverse("handoff_console:session", args=[target.id])).status_code == 403
        for name in OPERATOR_ACTIONS:
            response = post(client, action_url(name, target), {})
            assert (response.status_code, error_of(response)["code"]) == refused, name
        assert client.get(action_url("notes", target)).status_code == refused[0]
    # The anonymous owner of a session has no console either.
    anonymous = Client()
    anonymous.cookies["sessionid"] = store.session_key
    response = post(anonymous, action_url("take_over", session))
    assert response.status_code == 403 and error_of(response)["code"] == "permission_denied"
    assert DurableSession.objects.get(pk=session.pk).control == Control.QUEUED
    assert not OperatorNote.objects.exists()


@pytest.mark.parametrize("kind", ["permission", "staff"])
def test_operators_and_staff_see_the_queue_and_a_session(kind, ds_config):
    # Staff status counts only with STAFF_ARE_OPERATORS (False by default).
    ds_config(STAFF_ARE_OPERATORS=True)
    user = (
        make_user("olga", operator=True) if kind == "permission" else make_user("sam", staff=True)
    )
    session, _ = queued_session(reason="asked for a person")
    client = client_for(user)
    page = client.get(reverse("handoff_console:queue"))
    assert page.status_code == 200
    waiting = page.context["snapshot"]["sections"]["waiting"]
    assert [(r["id"], r["reason"]) for r in waiting] == [(str(session.id), "asked for a person")]
    view = client.get(reverse("handoff_console:session", args=[session.id]))
    assert view.status_code == 200
    assert view.context["brief"]["handoff"]["reason"] == "asked for a person"


def test_an_unknown_session_is_404_for_pages_and_actions():
    client = client_for(make_user("olga", operator=True))
    missing = "00000000-0000-4000-8000-000000000000"
    assert client.get(reverse("handoff_console:session", args=[missing])).status_code == 404
    for session_id in (missing, "not-a-uuid"):
        for name in OPERATOR_ACTIONS:
            response = post(client, action_url(name, session_id), {"text": "x"})
            assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    assert not OperatorNote.objects.exists()


def test_the_session_page_acts_through_the_api_only():
    session, _ = anonymous_session()
    page = client_for(make_user("olga", operator=True)).get(
        reverse("handoff_console:session", args=[session.id])
    )
    api = dict(page.context["config"]["api"])
    approval = api.pop("approval")  # a tool call's approval: its id replaces the placeholder
    assert approval == reverse(
        "durable_sessions:session-approval", args=[session.id, "approval-id"]
    )
    assert api.pop("replies") == reverse("handoff_console:api-replies")  # of no one session
    assert api == {name: action_url(name, session) for name in ACTION_ROUTES}
    assert api["take_over"].startswith(reverse("durable_sessions:session-create"))
    # The console has no action endpoints of its own any more.
    for name in ("take_over", "hand_back", "transfer", "close", "notes"):
        with pytest.raises(NoReverseMatch):
            reverse(f"handoff_console:{name}", args=[session.id])


def test_actions_answer_405_to_get():
    session, _ = anonymous_session()
    client = client_for(make_user("olga", operator=True))
    for name in ("take_over", "hand_back", "transfer", "close"):
        response = client.get(action_url(name, session))
        assert response.status_code == 405 and "POST" in response["Allow"]
        assert error_of(response)["code"] == "method_not_allowed"
    assert DurableSession.objects.get(pk=session.pk).control == Control.AI


def test_actions_and_notes_need_a_csrf_token():
    session, _ = anonymous_session()
    olga = make_user("olga", operator=True)
    client = client_for(olga, csrf=True)
    for name, body in (("take_over", {}), ("notes", {"text": "x"})):
        refused = post(client, action_url(name, session), body)
        assert refused.status_code == 403 and error_of(refused)["code"] == "csrf_failed"
    assert DurableSession.objects.get(pk=session.pk).control == Control.AI
    assert not OperatorNote.objects.exists()
    # The console page carries the token; the page's script sends it as X-CSRFToken.
    page = client.get(reverse("handoff_console:session", args=[session.id]))
    token = str(page.context["csrf_token"])
    assert f'name="csrf-token" content="{token}"' in page.content.decode()
    accepted = post(client, action_url("take_over", session), HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 200, accepted.content
    assert DurableSession.objects.get(pk=session.pk).control == Control.HUMAN
    noted = post(client, action_url("notes", session), {"text": "x"}, HTTP_X_CSRFTOKEN=token)
    assert noted.status_code == 201, noted.content


def test_grant_console_command_grants_and_revokes():
    carl = make_user("carl")
    client = client_for(carl)
    assert client.get(reverse("handoff_console:queue")).status_code == 403
    out = StringIO()
    call_command("grant_console", "carl", stdout=out)
    assert "Granted console access to carl." in out.getvalue()
    assert client.get(reverse("handoff_console:queue")).status_code == 200
    call_command("grant_console", "carl", "--revoke", stdout=StringIO())
    assert client.get(reverse("handoff_console:queue")).status_code == 403
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("grant_console", "nobody")


def test_revoking_warns_when_staff_status_still_grants_access(ds_config):
    ds_config(STAFF_ARE_OPERATORS=True)
    make_user("sam", staff=True, operator=True)
    err = StringIO()
    call_command("grant_console", "sam", "--revoke", stdout=StringIO(), stderr=err)
    assert "can still use the console" in err.getvalue()


# --- actions --------------------------------------------------------------------------------


def test_take_over_cancels_the_ai_reply_at_once_and_the_ai_stays_silent():
    session, _ = anonymous_session()
    olga = make_user("olga", operator=True)
    reply = service.start_assistant_message(session.id)
    service.append_delta(reply, "Let me check")
    response = post(client_for(olga), action_url("take_over", session))
    assert response.status_code == 200
    answer = response.json()
    assert answer["changed"] is True
    assert (answer["session"]["control"], answer["session"]["assigned_operator_id"]) == (
        "human",
        olga.pk,
    )
    reply.refresh_from_db()
    assert (reply.content, reply.state) == ("Let me check", MessageState.CANCELLED)
    with pytest.raises(NotInControl):
        service.append_delta(reply, " your order")
    with pytest.raises(NotInControl):
        service.start_assistant_message(session.id)
    notice = Message.objects.filter(session=session).last()
    assert (notice.role, notice.content) == ("system", "olga joined the conversation.")
    record = HandoffRecord.objects.get(session=session)
    assert (record.action, record.actor) == ("take_over", olga)


def test_a_second_claim_is_told_who_took_it():
    session, _ = queued_session()
    olga, omar = make_user("olga", operator=True), make_user("omar", operator=True)
    assert post(client_for(olga), action_url("take_over", session)).status_code == 200
    response = post(client_for(omar), action_url("take_over", session))
    assert response.status_code == 409
    error = error_of(response)
    assert (error["code"], error["message"]) == ("conflict", "taken by olga")


def test_hand_back_transfer_and_close_follow_the_holder_rules():
    session, _ = queued_session()
    olga, omar = make_user("olga", operator=True), make_user("omar", operator=True)
    as_olga, as_omar = client_for(olga), client_for(omar)
    not_held = post(as_olga, action_url("hand_back", session))
    assert not_held.status_code == 409 and "take it over first" in error_of(not_held)["message"]
    post(as_olga, action_url("take_over", session))
    # Only the holder hands back, transfers or closes a session held by a human.
    for name in ("hand_back", "close"):
        response = post(as_omar, action_url(name, session))
        assert response.status_code == 409 and error_of(response)["message"] == "taken by olga"
    bad = post(as_olga, action_url("transfer", session), {"to": make_user("carl").pk})
    assert bad.status_code == 400 and error_of(bad)["field"] == "to"
    nobody = post(as_olga, action_url("transfer", session), {"to": "x"})
    assert nobody.status_code == 400 and error_of(nobody)["field"] == "to"
    # The page sends the id of the chosen colleague as a number; a string is refused.
    as_text = post(as_olga, action_url("transfer", session), {"to": str(omar.pk)})
    assert as_text.status_code == 400 and error_of(as_text)["field"] == "to"
    moved = post(as_olga, action_url("transfer", session), {"to": omar.pk})
    assert moved.status_code == 200
    assert moved.json()["session"]["assigned_operator_id"] == omar.pk
    back = post(as_omar, action_url("hand_back", session), {"reason": "solved the login"})
    assert back.status_code == 200 and back.json()["session"]["control"] == "ai"
    closed = post(as_omar, action_url("close", session), {"reason": "done"})
    assert closed.status_code == 200 and closed.json()["session"]["status"] == "closed"
    # Closing again changes nothing; the page then says the session is already closed.
    again = post(as_omar, action_url("close", session))
    assert again.status_code == 200 and again.json()["changed"] is False
    actions = list(HandoffRecord.objects.filter(session=session).values_list("action", "actor"))
    assert actions == [
        ("request", None),
        ("take_over", olga.pk),
        ("transfer", olga.pk),
        ("hand_back", omar.pk),
        ("close", omar.pk),
    ]


def test_bad_json_is_a_clear_error():
    session, _ = anonymous_session()
    client = client_for(make_user("olga", operator=True))
    response = client.post(
        action_url("take_over", session), "[1, 2", content_type="application/json"
    )
    assert response.status_code == 400 and error_of(response)["code"] == "bad_json"


def test_the_transfer_choices_are_the_other_operators():
    session, _ = anonymous_session()
    olga = make_user("olga", operator=True)
    omar = make_user("omar", operator=True)
    make_user("sam", staff=True)  # staff status alone is not an operator
    make_user("carl")
    page = client_for(olga).get(reverse("handoff_console:session", args=[session.id]))
    assert [u.pk for u in page.context["operators"]] == [omar.pk]


def test_the_queue_sorts_sessions_into_sections_for_each_operator():
    olga, omar = make_user("olga", operator=True), make_user("omar", operator=True)
    first, _ = queued_session(reason="first")
    second, _ = queued_session(reason="second")
    ai, _ = anonymous_session()
    held, _ = anonymous_session()
    service.take_over(held.id, olga)
    closed, _ = anonymous_session()
    service.close_session(closed.id)

    def sections(user) -> dict[str, list[str]]:
        snapshot = client_for(user).get(reverse("handoff_console:queue")).context["snapshot"]
        return {name: [r["id"] for r in rows] for name, rows in snapshot["sections"].items()}

    ids = {name: str(s.id) for name, s in [("1", first), ("2", second), ("ai", ai), ("h", held)]}
    assert sections(olga) == {
        "waiting": [ids["1"], ids["2"]],  # oldest wait first
        "mine": [ids["h"]],
        "others": [],
        "ai": [ids["ai"]],
        "closed": [str(closed.id)],
    }
    assert sections(omar)["others"] == [ids["h"]] and sections(omar)["mine"] == []


# --- rendering untrusted text ----------------------------------------------------------------


def test_markup_in_messages_notes_and_briefs_is_escaped_in_the_pages():
    session, _ = anonymous_session()
    service.post_message(session.id, author=customer(session), content=MARKUP)
    reply = service.start_assistant_message(session.id)
    service.append_delta(reply, MARKUP)
    service.request_handoff(session.id, by=customer(session), reason=MARKUP, summary=MARKUP)
    olga = make_user("olga", operator=True)
    add_note(session.id, author=olga, text=MARKUP)
    client = client_for(olga)
    for url in (
        reverse("handoff_console:queue"),
        reverse("handoff_console:session", args=[session.id]),
    ):
        html = client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in html
        assert "<img src=x" not in html
    html = client.get(reverse("handoff_console:session", args=[session.id])).content.decode()
    # The brief and the note reach the page as JSON data, which the page shows as text.
    assert "\\u003Cimg src=x onerror=alert(1)\\u003E" in html


# --- the brief ------------------------------------------------------------------------------


def test_the_brief_gives_the_current_reason_and_quotes_the_customer_without_a_summary():
    session, _ = anonymous_session()
    olga = make_user("olga", operator=True)
    client = client_for(olga)
    url = action_url("brief", session)
    service.post_message(session.id, author=customer(session), content="where is parcel 7?")
    assert client.get(url).json()["handoff"] is None  # the AI has it

    # The customer pressed "Talk to a human": no summary, so the brief quotes them.
    service.request_handoff(session.id, by=customer(session), reason="asked for a person")
    brief = client.get(url).json()
    assert brief["handoff"]["reason"] == "asked for a person"
    assert brief["handoff"]["control"] == "queued"
    assert brief["summary_from"] == "customer"
    assert [q["text"] for q in brief["customer_last"]] == ["where is parcel 7?"]

    # Later changes are the current reason; an agent's summary of the same stretch stays.
    session2, _ = anonymous_session()
    service.request_handoff(session2.id, by=None, reason="refund", summary="wants a refund")
    service.take_over(session2.id, olga, reason="mine now")
    brief2 = client.get(action_url("brief", session2)).json()
    assert (brief2["handoff"]["reason"], brief2["handoff"]["by"]) == ("mine now", "olga")
    assert (brief2["summary_from"], brief2["handoff"]["summary"]) == ("agent", "wants a refund")
    # Back with the AI, then taken over unasked: the old summary no longer applies.
    service.hand_back(session2.id, olga)
    service.take_over(session2.id, olga)
    brief3 = client.get(action_url("brief", session2)).json()
    assert brief3["handoff"]["reason"] == "taken over"
    assert brief3["summary_from"] == "customer"


def test_the_brief_is_for_operators_only():
    session, _ = anonymous_session()
    url = action_url("brief", session)
    assert client_for(make_user("carol")).get(url).status_code in (403, 404)
    assert client_for().get(url).status_code in (401, 403, 404)
    assert client_for(make_user("olga", operator=True)).get(url).status_code == 200


# --- private notes --------------------------------------------------------------------------


def test_notes_are_stored_listed_and_refused_to_non_operators():
    session, store = anonymous_session()
    olga = make_user("olga", operator=True)
    client = client_for(olga)
    response = post(client, action_url("notes", session), {"text": "VIP, be nice"})
    assert response.status_code == 201
    note = response.json()
    assert (note["text"], note["author"]["name"]) == ("VIP, be nice", "olga")
    assert note["session_id"] == str(session.id)
    listed = client.get(action_url("notes", session)).json()["notes"]
    assert [n["id"] for n in listed] == [note["id"]]
    # The customer sees their session, but never its notes.
    customer_client = Client()
    customer_client.cookies["sessionid"] = store.session_key
    for response in (
        customer_client.get(action_url("notes", session)),
        post(customer_client, action_url("notes", session), {"text": "x"}),
    ):
        assert (response.status_code, error_of(response)["code"]) == (403, "permission_denied")
        assert "VIP" not in response.content.decode()
    carl = post(client_for(make_user("carl")), action_url("notes", session), {"text": "x"})
    assert (carl.status_code, error_of(carl)["code"]) == (404, "not_found")
    assert OperatorNote.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (b'{"text": "  "}', "invalid_field", "text"),
        (b'{"text": ""}', "invalid_field", "text"),
        (b"{}", "invalid_field", "text"),
        (b'{"text": 5}', "invalid_field", "text"),
        (b'{"text": "x", "pinned": true}', "invalid_field", "pinned"),
        (b'{"text": "a\\u0000b"}', "invalid_field", "text"),
        (b'["x"]', "bad_request", None),
        (b'{"text": ', "bad_json", None),
    ],
)
def test_a_bad_note_gets_a_clear_400(body, code, field):
    session, _ = anonymous_session()
    client = client_for(make_user("olga", operator=True))
    response = client.post(action_url("notes", session), body, content_type="application/json")
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert (error["code"], error.get("field")) == (code, field)
    assert not OperatorNote.objects.exists()


def test_a_note_longer_than_the_setting_is_refused(settings):
    settings.HANDOFF_CONSOLE = {"MAX_NOTE_CHARS": 10}
    session, _ = anonymous_session()
    client = client_for(make_user("olga", operator=True))
    response = post(client, action_url("notes", session), {"text": "x" * 11})
    assert response.status_code == 400 and error_of(response)["field"] == "text"
    assert post(client, action_url("notes", session), {"text": "x" * 10}).status_code == 201


async def test_a_note_reaches_operators_viewing_and_never_the_customer():
    session, store = await db(anonymous_session)()
    olga = await db(make_user)("olga", operator=True)
    omar = await db(make_user)("omar", operator=True)
    customer_ws, _ = await open_ws(session.id, store=store)
    operator_ws, _ = await open_ws(session.id, user=omar)
    secret = "customer is a known fraud risk"
    as_olga = await db(client_for)(olga)
    response = await db(post)(as_olga, action_url("notes", session), {"text": secret})
    assert response.status_code == 201
    while True:  # the operator gets it (after presence and other state frames)
        frame = await operator_ws.receive_json_from(timeout=5)
        if frame["type"] == "note.created":
            break
    assert frame["note"]["text"] == secret and frame["note"]["author"]["name"] == "olga"
    # The customer's connection gets nothing about it: no frame, no event, no seq.
    customer_frames = []
    while not await customer_ws.receive_nothing(timeout=0.5):
        customer_frames.append(await customer_ws.receive_from())
    assert not [f for f in customer_frames if "note" in f or secret in f], customer_frames
    await customer_ws.disconnect()
    await operator_ws.disconnect()


def test_the_customers_http_endpoints_never_list_notes():
    session, store = anonymous_session()
    olga = make_user("olga", operator=True)
    service.post_message(session.id, author=customer(session), content="hello")
    add_note(session.id, author=olga, text="a private remark")
    as_customer = Client()
    as_customer.cookies["sessionid"] = store.session_key
    events = as_customer.get(reverse("durable_sessions:session-events", args=[session.id]))
    assert events.status_code == 200 and events.json()["events"]
    assert "private remark" not in events.content.decode()
    chat = as_customer.get(reverse("chat", args=[session.id]))
    assert chat.status_code == 200 and "private remark" not in chat.content.decode()
    assert "private remark" not in json.dumps(
        list(session.events.values_list("payload", flat=True))
    )


# --- the claim race -------------------------------------------------------------------------


def _race(claim, contenders: int) -> tuple[list[Any], list[BaseException]]:
    """Run ``claim(i)`` in ``contenders`` threads released at once."""
    barrier = threading.Barrier(contenders)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        try:
            barrier.wait()
            outcome = claim(i)
            with lock:
                results.append(outcome)
        except BaseException as exc:  # counted below
            with lock:
                errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


def _assert_one_winner(session: DurableSession, operators: list[Any]) -> Any:
    session.refresh_from_db()
    winner = next(op for op in operators if op.pk == session.assigned_operator_id)
    assert session.control == Control.HUMAN
    assert HandoffRecord.objects.filter(session=session, action="take_over").count() == 1
    joined = Message.objects.filter(session=session, content__endswith="joined the conversation.")
    assert list(joined.values_list("content", flat=True)) == [
        f"{winner.username} joined the conversation."
    ]
    return winner


@pytest.mark.parametrize("database", ["postgres", "configured"])
def test_concurrent_claims_through_the_service_have_exactly_one_winner(database, request):
    if database == "postgres":
        request.getfixturevalue("postgres")
    session, _ = queued_session()
    operators = [make_user(f"op{i}", operator=True) for i in range(8)]
    won, lost = _race(lambda i: service.take_over(session.id, operators[i]), len(operators))
    assert len(won) == 1 and len(lost) == 7
    assert all(isinstance(e, Conflict) for e in lost), lost
    winner = _assert_one_winner(session, operators)
    assert {str(e) for e in lost} == {f"taken by {winner.username}"}


def test_concurrent_claims_through_the_endpoint_have_exactly_one_winner(postgres):
    session, _ = queued_session()
    operators = [make_user(f"op{i}", operator=True) for i in range(6)]
    clients = [client_for(op) for op in operators]
    url = action_url("take_over", session)
    responses, errors = _race(lambda i: (i, post(clients[i], url)), len(operators))
    assert not errors, errors
    statuses = sorted(r.status_code for _, r in responses)
    assert statuses == [200, 409, 409, 409, 409, 409]
    winner = _assert_one_winner(session, operators)
    for i, response in responses:
        if response.status_code == 409:
            assert error_of(response)["message"] == f"taken by {winner.username}"
        else:
            assert operators[i] == winner


# --- the live feed --------------------------------------------------------------------------


def feed(user: Any) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(feed_app, "/ws/console/")
    comm.scope["user"] = user if user is not None else AnonymousUser()
    comm.scope["session"] = None
    return comm


async def feed_frame(comm: WebsocketCommunicator, kind: str, wait: float = 5) -> dict[str, Any]:
    """The next frame of type ``kind`` (skipping others)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        frame = await comm.receive_json_from(timeout=max(deadline - loop.time(), 0.01))
        if frame["type"] == kind:
            return frame


@pytest.mark.parametrize("who", ["anonymous", "customer", "inactive_operator"])
async def test_the_feed_refuses_non_operators_with_4403(who):
    user = None
    if who == "customer":
        user = await db(make_user)("alice")
    elif who == "inactive_operator":
        user = await db(make_user)("olga", operator=True)
        user.is_active = False
        await db(user.save)()
    comm = feed(user)
    connected, _ = await comm.connect()
    assert connected  # accepted only to deliver the close code
    output = await comm.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": 4403}
    await comm.wait()


async def test_the_feed_sends_a_snapshot_then_the_row_of_a_session_that_gets_queued():
    waiting, _ = await db(queued_session)(reason="first in line")
    other, _ = await db(anonymous_session)()
    olga = await db(make_user)("olga", operator=True)
    comm = feed(olga)
    assert (await comm.connect())[0]
    snapshot = await feed_frame(comm, "snapshot")
    assert [r["id"] for r in snapshot["sections"]["waiting"]] == [str(waiting.id)]
    assert [r["id"] for r in snapshot["sections"]["ai"]] == [str(other.id)]
    customer_of_other = await db(customer)(other)
    await service.arequest_handoff(
        other.id, by=customer_of_other, reason="needs a person", summary="short summary"
    )
    update = await feed_frame(comm, "rows")
    (row,) = update["rows"]
    assert (row["id"], row["section"], row["reason"], row["summary"]) == (
        str(other.id),
        "waiting",
        "needs a person",
        "short summary",
    )
    assert row["waiting_since"] and update["removed"] == []
    await comm.disconnect()


async def test_the_feed_refreshes_so_that_a_lost_wake_up_only_delays(settings, monkeypatch):
    settings.HANDOFF_CONSOLE = {"REFRESH_SECONDS": 0.3}

    async def drop(self, message):  # the channel layer lost every wake-up
        return None

    monkeypatch.setattr(console_consumers.ConsoleFeedConsumer, "sessions_activity", drop)
    session, _ = await db(anonymous_session)()
    olga = await db(make_user)("olga", operator=True)
    comm = feed(olga)
    assert (await comm.connect())[0]
    first = await feed_frame(comm, "snapshot")
    assert first["sections"]["waiting"] == []
    await service.arequest_handoff(session.id, by=await db(customer)(session), reason="help")
    later = await feed_frame(comm, "snapshot", wait=3)
    assert [r["id"] for r in later["sections"]["waiting"]] == [str(session.id)]
    await comm.disconnect()


async def test_the_feed_coalesces_a_burst_and_a_reconnect_starts_from_a_snapshot(settings):
    settings.HANDOFF_CONSOLE = {"DEBOUNCE_SECONDS": 0.2, "SNAPSHOT_AFTER": 3}
    sessions = [(await db(anonymous_session)(f"v{i}"))[0] for i in range(5)]
    olga = await db(make_user)("olga", operator=True)
    comm = feed(olga)
    assert (await comm.connect())[0]
    await feed_frame(comm, "snapshot")

    def take_all() -> None:
        # One transaction: the five wake-ups are sent together, right after the commit.
        with transaction.atomic():
            for session in sessions:
                service.take_over(session.id, olga)

    await db(take_all)()
    # Five sessions changed within the window: one fresh snapshot, not five updates.
    update = await comm.receive_json_from(timeout=5)
    assert update["type"] == "snapshot"
    assert {r["id"] for r in update["sections"]["mine"]} == {str(s.id) for s in sessions}
    await comm.disconnect()
    again = feed(olga)
    assert (await again.connect())[0]
    fresh = await feed_frame(again, "snapshot")
    assert len(fresh["sections"]["mine"]) == 5 and fresh["sections"]["ai"] == []
    await again.disconnect()


async def test_the_feed_closes_when_access_is_revoked(settings):
    settings.HANDOFF_CONSOLE = {"REFRESH_SECONDS": 0.2}
    carl = await db(make_user)("carl", operator=True)
    comm = feed(carl)
    assert (await comm.connect())[0]
    await feed_frame(comm, "snapshot")
    await db(call_command)("grant_console", "carl", "--revoke", stdout=StringIO())
    assert not await db(is_operator)(await db(type(carl).objects.get)(pk=carl.pk))
    while True:
        output = await comm.receive_output(timeout=3)
        if output["type"] == "websocket.close":
            break
    assert output["code"] == 4403
    await comm.disconnect()


def test_closing_an_ai_session_is_allowed_and_audited():
    session, _ = anonymous_session()
    olga = make_user("olga", operator=True)
    response = post(client_for(olga), action_url("close", session), {"reason": "spam"})
    assert response.status_code == 200
    session.refresh_from_db()
    assert session.status == Status.CLOSED
    record = HandoffRecord.objects.get(session=session)
    assert (record.action, record.actor, record.reason) == ("close", olga, "spam")

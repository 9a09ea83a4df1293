"""Who may use an AI SDK chat: the same rules as the REST API (docs/aisdk.md)."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from durable_sessions.models import ChatLink, DurableSession, Message
from tests.factories import make_user, visitor_session

pytestmark = [pytest.mark.django_db(transaction=True)]

CHAT = reverse("durable_sessions:aisdk-chat")


def body(chat_id: str, message_id: str = "m1", text: str = "hello") -> str:
    message = {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}
    return json.dumps({"id": chat_id, "messages": [message], "trigger": "submit-message"})


def visitor(name: str) -> Client:
    client = Client()
    client.cookies["sessionid"] = visitor_session(name).session_key
    return client


def test_the_first_post_makes_the_session_and_a_stranger_gets_404():
    alice = visitor("v-alice")
    response = alice.post(CHAT, body("chat-a"), content_type="application/json")
    assert response.status_code == 200 and response["x-vercel-ai-ui-message-stream"] == "v1"
    response.close()
    link = ChatLink.objects.get(chat_id="chat-a")
    assert link.session.owner_visitor == "v-alice"
    assert list(
        Message.objects.filter(session=link.session).values_list("client_id", "content")
    ) == [("m1", "hello")]
    bob = visitor("v-bob")
    for response in (
        bob.post(CHAT, body("chat-a", "m2"), content_type="application/json"),
        bob.get(reverse("durable_sessions:aisdk-stream", args=["chat-a"])),
        bob.post(reverse("durable_sessions:aisdk-cancel", args=["chat-a"])),
        bob.post(CHAT, body(str(link.session_id), "m3"), content_type="application/json"),
    ):
        assert response.status_code == 404
        assert json.loads(response.content)["error"]["code"] == "not_found"
    assert Message.objects.count() == 1 and DurableSession.objects.count() == 1
    # The owner's detail shows the chat id; an idle chat resumes nothing.
    detail = alice.get(reverse("durable_sessions:session-detail", args=[link.session_id]))
    assert detail.json()["chat_id"] == "chat-a"
    cancel = alice.post(reverse("durable_sessions:aisdk-cancel", args=["chat-a"]))
    assert cancel.status_code == 200 and cancel.json()["cancelled"] is True  # the pending run
    assert alice.get(reverse("durable_sessions:aisdk-stream", args=["chat-a"])).status_code == 204


def test_a_client_that_accepts_only_event_streams_is_answered():
    alice = visitor("v-accept")
    stream = reverse("durable_sessions:aisdk-stream", args=["chat-accept"])
    events = {"HTTP_ACCEPT": "text/event-stream"}
    # No such chat yet: the error is JSON all the same.
    missing = alice.get(stream, **events)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    response = alice.post(CHAT, body("chat-accept"), content_type="application/json", **events)
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    response.close()
    alice.post(reverse("durable_sessions:aisdk-cancel", args=["chat-accept"]), **events)
    assert alice.get(stream, **events).status_code == 204


def test_a_cookie_post_needs_the_csrf_token():
    strict = Client(enforce_csrf_checks=True)
    strict.cookies["sessionid"] = visitor_session("v-csrf").session_key
    response = strict.post(CHAT, body("chat-c"), content_type="application/json")
    assert response.status_code == 403
    assert json.loads(response.content)["error"]["code"] == "csrf_failed"
    assert not ChatLink.objects.exists()
    user = make_user("ursula")
    logged_in = Client(enforce_csrf_checks=True)
    logged_in.force_login(user)
    refused = logged_in.post(CHAT, body("chat-u"), content_type="application/json")
    assert refused.status_code == 403 and not ChatLink.objects.exists()

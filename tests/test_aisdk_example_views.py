"""The AI SDK example page of the demo: who may open a conversation there."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from durable_sessions import service
from durable_sessions.models import DurableSession
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def page_config(html: str) -> dict[str, str]:
    found = re.search(r'<script id="aisdk-config" type="application/json">(.*?)</script>', html)
    assert found, "the page carries its configuration"
    return json.loads(found.group(1))


def test_the_start_page_creates_a_conversation_for_the_visitor_and_opens_it():
    browser = Client()
    assert "Start an AI SDK chat" in browser.get("/examples/ai-sdk/").content.decode()
    started = browser.post("/examples/ai-sdk/")
    session = DurableSession.objects.get()
    assert started.status_code == 302
    assert started["Location"] == f"/examples/ai-sdk/{session.id}/"
    config = page_config(browser.get(started["Location"]).content.decode())
    assert config["session_id"] == str(session.id)
    assert config["chat_url"].endswith("durable_sessions/vendor/ai-chat.js")
    assert config["transport_url"].endswith("durable_sessions/aisdk-transport.js")


def test_somebody_elses_or_an_unknown_conversation_is_not_found():
    owner = make_user("owner")
    session = service.create_session(owner=owner, title="theirs")
    stranger = Client()
    stranger.force_login(make_user("stranger"))
    assert stranger.get(f"/examples/ai-sdk/{session.id}/").status_code == 404
    assert stranger.get("/examples/ai-sdk/3e7be487-d86f-4ac6-9e4d-c9ead0e5e903/").status_code == 404
    assert stranger.get("/examples/ai-sdk/not-a-uuid/").status_code == 404
    assert stranger.put("/examples/ai-sdk/").status_code == 405
    assert DurableSession.objects.count() == 1

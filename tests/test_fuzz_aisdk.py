"""Property-based fuzzing of the AI SDK chat endpoint's body (docs/aisdk.md): for any body
and caller, no 5xx; a refusal has the API's error shape and stores nothing; an accepted
post answers the UI message stream."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from durable_sessions import service
from durable_sessions.models import ChatLink, DurableSession, Event, Message
from tests.factories import make_user, visitor_session
from tests.fuzzing import FUZZ, json_value, nasty_text, raw_json_text

pytestmark = [pytest.mark.django_db(transaction=True)]

ids = st.one_of(nasty_text, st.sampled_from(["chat-1", "c" * 201, "m1", "1", "-1", "999999"]))
parts = st.lists(
    st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(nasty_text, json_value)}),
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(["tool-x", "reasoning", "text"]),
                "state": st.sampled_from(["approval-responded", "done"]),
                "approval": st.one_of(
                    json_value,
                    st.fixed_dictionaries(
                        {"id": ids, "approved": st.one_of(st.booleans(), json_value)}
                    ),
                ),
            }
        ),
        json_value,
    ),
    max_size=3,
)
messages = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "id": ids,
                "role": st.sampled_from(["user", "assistant", "system", "other"]),
                "parts": st.one_of(parts, json_value),
            }
        ),
        json_value,
    ),
    max_size=3,
)
chat_bodies = st.one_of(
    st.fixed_dictionaries(
        {
            "id": st.one_of(ids, json_value),
            "messages": st.one_of(messages, json_value),
        },
        optional={
            "trigger": st.one_of(
                st.sampled_from(["submit-message", "regenerate-message"]), json_value
            ),
            "messageId": st.one_of(ids, json_value),
            "extra": json_value,
        },
    ).map(json.dumps),
    json_value.map(json.dumps),
    raw_json_text,
)


def stored() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (DurableSession, Event, Message, ChatLink))


@pytest.fixture
def callers(settings: Any) -> dict[str, Client]:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    store = visitor_session("v-fuzz")
    service.create_session(visitor="v-fuzz", title="fuzzed")
    owner = Client()
    owner.cookies["sessionid"] = store.session_key
    user = Client()
    user.force_login(make_user("ursula"))
    return {"visitor": owner, "user": user, "anonymous": Client()}


@pytest.mark.parametrize("caller", ["visitor", "user", "anonymous"])
def test_any_chat_body_gets_an_answer_and_a_refusal_stores_nothing(callers, caller):
    client = callers[caller]
    path = reverse("durable_sessions:aisdk-chat")

    @FUZZ
    @given(body=chat_bodies)
    def run(body: str) -> None:
        before = stored()
        response = client.post(path, body, content_type="application/json")
        assert response.status_code < 500
        if response.status_code >= 400:
            error = json.loads(response.content.decode("utf-8"))["error"]
            assert {"code", "message"} <= set(error)
            assert stored() == before, f"a refused post ({error}) stored something"
        else:
            assert response.status_code == 200
            assert response["x-vercel-ai-ui-message-stream"] == "v1"
        response.close()

    run()

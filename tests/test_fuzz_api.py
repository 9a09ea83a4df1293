"""Property-based fuzzing of every REST endpoint (docs/api.md) and the console's own.

For any body, query string and caller: no 5xx; every refusal has the documented error
shape in valid UTF-8 JSON; and a refused request stores nothing.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from durable_sessions import service
from durable_sessions.models import DurableSession, Event, HandoffRecord, Message
from handoff_console.models import CannedReply, OperatorNote, ReadMark
from tests.factories import make_user, visitor_session
from tests.fuzzing import FUZZ, bodies, queries

pytestmark = [pytest.mark.django_db(transaction=True)]

JSON = "application/json"
CALLERS = ("owner", "operator", "other", "anonymous")

# name -> (method, URL name, session in the URL, body fields or query parameters)
ENDPOINTS: dict[str, tuple[str, str, bool, list[str]]] = {
    "sessions_list": ("get", "durable_sessions:session-create", False, ["limit", "offset"]),
    "sessions_filter": ("get", "durable_sessions:session-create", False, ["control", "status"]),
    "sessions_create": ("post", "durable_sessions:session-create", False, ["title"]),
    "sessions_retrieve": ("get", "durable_sessions:session-detail", True, []),
    "messages_list": ("get", "durable_sessions:session-messages", True, ["after_seq", "limit"]),
    "messages_create": (
        "post",
        "durable_sessions:session-messages",
        True,
        ["content", "client_id", "mode"],
    ),
    "events_list": ("get", "durable_sessions:session-events", True, ["after_seq", "limit", "wait"]),
    "handoff_request": ("post", "durable_sessions:session-handoff", True, ["reason"]),
    "take_over": ("post", "durable_sessions:session-take-over", True, ["reason"]),
    "hand_back": ("post", "durable_sessions:session-hand-back", True, ["reason"]),
    "transfer": ("post", "durable_sessions:session-transfer", True, ["to", "reason"]),
    "close": ("post", "durable_sessions:session-close", True, ["reason"]),
    "cancel_reply": ("post", "durable_sessions:session-cancel-reply", True, []),
    "notes_list": ("get", "handoff_console:api-notes", True, []),
    "notes_create": ("post", "handoff_console:api-notes", True, ["text"]),
    "brief_read": ("get", "handoff_console:api-brief", True, []),
    "read_mark": ("post", "handoff_console:api-read", True, ["seq"]),
    "canned_replies_list": ("get", "handoff_console:api-replies", False, []),
    "canned_replies_create": (
        "post",
        "handoff_console:api-replies",
        False,
        ["shortcut", "text", "shared"],
    ),
}


def stored() -> tuple[int, ...]:
    return tuple(
        model.objects.count()
        for model in (
            DurableSession,
            Event,
            Message,
            HandoffRecord,
            OperatorNote,
            CannedReply,
            ReadMark,
        )
    )


def query_string(query: dict[str, str]) -> str:
    # Lone surrogates go out as the (invalid) UTF-8 bytes a raw client could send.
    return "&".join(
        f"{quote(k.encode('utf-8', 'surrogatepass'))}={quote(v.encode('utf-8', 'surrogatepass'))}"
        for k, v in query.items()
    )


def without_a_wait(query: dict[str, str]) -> dict[str, str]:
    """The query, but never a long poll that would really wait."""
    try:
        wait = float(query.get("wait", "0"))
    except ValueError:
        return query
    return {**query, "wait": "0"} if math.isfinite(wait) and wait > 0 else query


@pytest.fixture
def callers(settings: Any) -> dict[str, Any]:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    operator = make_user("olga", operator=True)
    make_user("omar", operator=True)
    store = visitor_session("v-fuzz")
    session = service.create_session(visitor="v-fuzz", title="fuzzed")
    owner = Client()
    owner.cookies["sessionid"] = store.session_key
    op = Client()
    op.force_login(operator)
    other = Client()
    other.force_login(make_user("other"))
    return {
        "session": session,
        "owner": owner,
        "operator": op,
        "other": other,
        "anonymous": Client(),
    }


def check(response: Any, before: tuple[int, ...]) -> None:
    assert response.status_code < 500, response.content[:500]
    body = json.loads(response.content.decode("utf-8")) if response.content else None
    if response.status_code >= 400:
        assert isinstance(body, dict) and set(body) == {"error"}, body
        error = body["error"]
        # A refusal by the rate limit also says when to try again (documented).
        extra = {"retry_after"} if error.get("code") == "rate_limited" else set()
        assert {"code", "message"} <= set(error) <= {"code", "message", "field", *extra}, error
        assert all(isinstance(error[key], str) for key in set(error) - extra), error
        assert all(isinstance(error[key], int) for key in extra), error
        assert stored() == before, f"a refused request ({error}) stored something"


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_any_input_gets_an_answer_and_a_refusal_stores_nothing(callers, endpoint):
    method, name, in_session, fields = ENDPOINTS[endpoint]
    session = callers["session"]
    path = reverse(name, args=[session.pk] if in_session else [])
    inputs = bodies(fields) if method == "post" else queries(fields)

    @FUZZ
    @given(data=inputs, who=st.sampled_from(CALLERS), json_type=st.booleans())
    def run(data: Any, who: str, json_type: bool) -> None:
        client = callers[who]
        before = stored()
        if method == "post":
            content_type = JSON if json_type else "text/plain"
            response = client.post(path, data, content_type=content_type)
        else:
            response = client.get(f"{path}?{query_string(without_a_wait(data))}")
        check(response, before)

    run()


# The branch endpoints name a message in the URL: any id, the customer's own among them.
BRANCH_URLS = (
    "durable_sessions:session-message-edit",
    "durable_sessions:session-message-regenerate",
    "durable_sessions:session-message-activate",
)


@pytest.mark.parametrize("name", BRANCH_URLS)
def test_any_branch_request_gets_an_answer_and_a_refusal_stores_nothing(callers, name):
    session = callers["session"]
    customer = service.participant_for(session.pk, "customer")
    posted = service.post_message(session.pk, author=customer, content="hello").message

    @FUZZ
    @given(
        data=bodies(["content", "client_id"]),
        who=st.sampled_from(CALLERS),
        message_id=st.one_of(st.just(posted.pk), st.integers(0, 2**70)),
    )
    def run(data: Any, who: str, message_id: int) -> None:
        before = stored()
        path = reverse(name, args=[session.pk, message_id])
        check(callers[who].post(path, data, content_type=JSON), before)

    run()


# Header values as a server hands them to Django: Latin-1 text, no line breaks.
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
)
AUTHORIZATION = st.one_of(
    HEADER_TEXT,
    st.builds(lambda key: f"Token {key}", HEADER_TEXT),
    st.builds(lambda key: f"token  {key} extra", HEADER_TEXT),
    st.sampled_from(["Token", "Token ", "Bearer abc", "Basic Zm9vOmJhcg=="]),
)


@pytest.mark.parametrize("token_app", [True, False], ids=["tokens", "no-token-app"])
def test_any_authorization_header_gets_an_answer_and_stores_nothing(callers, settings, token_app):
    if not token_app:
        settings.INSTALLED_APPS = [
            a for a in settings.INSTALLED_APPS if a != "rest_framework.authtoken"
        ]
    path = reverse("durable_sessions:session-create")

    @FUZZ
    @given(header=AUTHORIZATION, post=st.booleans(), who=st.sampled_from(CALLERS))
    def run(header: str, post: bool, who: str) -> None:
        client = callers[who]
        before = stored()
        headers = {"Authorization": header}
        if post:
            response = client.post(path, {"title": "t"}, content_type=JSON, headers=headers)
        else:
            response = client.get(path, headers=headers)
        check(response, before)
        if header.split()[:1] in (["Token"], ["token"]):
            # A token that is not a valid one is refused, never served as a visitor.
            assert response.status_code == 401, (header, response.content[:200])
            assert stored() == before


def test_any_approval_answer_gets_an_answer_and_a_refusal_changes_nothing(callers):
    from durable_sessions.models import MessagePart
    from durable_sessions.service import parts

    session = callers["session"]
    reply = service.start_assistant_message(session.pk)
    call = parts.start_part(reply.pk, "tool_call", tool_name="refund_order")
    call = parts.tool_input_ready(call.pk, {"order_id": "1"}, approvers="any")
    # Any id the route takes (one path segment): the others are Django's own 404.
    segment = st.text(st.characters(blacklist_characters="/", codec="utf-8"), min_size=1)
    ids = st.one_of(st.just(call.wire_id), segment.filter(lambda t: t.strip()), st.just("m1p0"))

    @FUZZ
    @given(
        data=bodies(["approved", "reason", "client_id"]),
        who=st.sampled_from(CALLERS),
        approval=ids,
    )
    def run(data: Any, who: str, approval: str) -> None:
        path = f"{reverse('durable_sessions:session-detail', args=[session.pk])}approvals/"
        before = (stored(), list(MessagePart.objects.values_list("state", "decision")))
        response = callers[who].post(f"{path}{quote(approval, safe='')}/", data, content_type=JSON)
        assert response.status_code < 500, response.content[:500]
        if response.status_code >= 400:
            assert set(response.json()) == {"error"}
            after = (stored(), list(MessagePart.objects.values_list("state", "decision")))
            assert after == before
        answered = Event.objects.filter(session=session, type="tool.updated").count()
        assert answered <= 2  # awaiting-approval, then at most one decision

    run()

"""Messages with parts, and answering a tool call's approval over HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from durable_sessions import service
from durable_sessions.models import Event, MessagePart
from durable_sessions.service import parts
from tests.factories import make_user
from tests.test_api import JSON, as_visitor, error, url

pytestmark = [pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def waiting_call(approvers: str = "any") -> tuple[Any, MessagePart]:
    """A session whose AI reply has reasoning and a tool call that waits for approval."""
    session = service.create_session(visitor="v-owner")
    service.post_customer_message(session.pk, "refund order 1001")
    reply = service.start_assistant_message(session.pk)
    thought = parts.start_part(reply.pk, "reasoning")
    service.append_delta(reply.pk, "x")  # a part-less delta still works
    parts.end_part(thought.pk)
    call = parts.start_part(reply.pk, "tool_call", tool_name="refund_order", tool_call_id="c1")
    call = parts.tool_input_ready(call.pk, {"order_id": "1001"}, approvers=approvers)
    return session, call


def answer(client: Client, session: Any, approval: str, **body: Any) -> Any:
    path = f"{url('session-create')}{session.pk}/approvals/{approval}/"
    return client.post(path, body, content_type=JSON)


def test_messages_carry_their_parts(db):
    session, _call = waiting_call()
    client = as_visitor(Client(), "v-owner")
    body = client.get(url("session-messages", session)).json()
    question, reply = body["messages"]
    assert question["parts"] == [
        {
            "id": f"m{question['id']}p0",
            "index": 0,
            "step": 0,
            "type": "text",
            "state": "done",
            "text": "refund order 1001",
        }
    ]
    thought, tool = reply["parts"]
    assert (thought["type"], thought["state"]) == ("reasoning", "done")
    assert tool["tool_name"] == "refund_order" and tool["state"] == "awaiting-approval"
    assert tool["approval"]["pending"] is True and tool["approval"]["approvers"] == "any"


def test_the_customer_answers_once_and_a_retry_is_the_same_answer(db):
    session, call = waiting_call()
    client = as_visitor(Client(), "v-owner")
    first = answer(client, session, call.wire_id, approved=True, client_id="k1")
    assert first.status_code == 200, first.content
    assert first.json()["part"]["state"] == "approved" and first.json()["duplicate"] is False
    again = answer(client, session, call.wire_id, approved=True, client_id="k1")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    other = answer(client, session, call.wire_id, approved=False, client_id="k2")
    assert other.status_code == 409 and error(other)["code"] == "already_answered"
    assert Event.objects.filter(session=session, type="tool.updated").count() == 2


def test_bad_answers_change_nothing(db):
    session, call = waiting_call(approvers="operator")
    client = as_visitor(Client(), "v-owner")
    before = session.__class__.objects.get(pk=session.pk).last_seq
    cases = [
        ({"approved": "yes"}, 400, "invalid_field"),
        ({"approved": 1}, 400, "invalid_field"),
        ({}, 400, "invalid_field"),
        ({"approved": True, "extra": 1}, 400, "invalid_field"),
        ({"approved": True}, 403, "not_allowed"),  # operators only
    ]
    for body, status, code in cases:
        response = answer(client, session, call.wire_id, **body)
        assert (response.status_code, error(response)["code"]) == (status, code), body
    missing = answer(client, session, "m999999p0", approved=True)
    assert missing.status_code == 404 and error(missing)["code"] == "approval_not_found"
    junk = answer(client, session, "not-an-id", approved=True)
    assert junk.status_code == 404
    stranger = as_visitor(Client(), "v-other")
    assert answer(stranger, session, call.wire_id, approved=True).status_code in (403, 404)
    assert session.__class__.objects.get(pk=session.pk).last_seq == before
    assert MessagePart.objects.get(pk=call.pk).state == "awaiting-approval"


def test_an_operator_answers_what_is_theirs(db):
    session, call = waiting_call(approvers="operator")
    operator = make_user("op", operator=True)
    client = Client()
    client.force_login(operator)
    response = answer(client, session, call.wire_id, approved=False, reason="too much")
    assert response.status_code == 200, response.content
    approval = response.json()["part"]["approval"]
    assert approval["decision"] == "denied" and approval["reason"] == "too much"
    assert approval["decided_by"]["kind"] == "operator"
    assert response.json()["part"]["state"] == "denied"

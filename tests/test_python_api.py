"""The public Python API a host's code calls, as docs/python-api.md shows it."""

from __future__ import annotations

import json
import uuid

import pytest

from durable_sessions import exports, service
from durable_sessions.errors import SessionNotFound
from durable_sessions.models import Event
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_a_host_starts_a_session_with_metadata_and_a_notice_then_exports_it():
    session = service.create_session(visitor="v1", title="Order #7", metadata={"order": 7})
    service.post_system_message(session.id, "We are looking at order #7.")
    service.post_customer_message(session.id, "Where is it?")
    service.operator_reply(session.id, operator=make_user("olga", operator=True), content="Here")

    document = exports.export_session(session.id)
    json.dumps(document, default=str)  # JSON-ready
    assert document["format"] == "durable-sessions.export"
    (exported,) = document["sessions"]
    assert exported["session"]["title"] == "Order #7"
    assert exported["session"]["metadata"] == {"order": 7}
    contents = [(m["role"], m["content"]) for m in exported["messages"]]
    assert contents[0] == ("system", "We are looking at order #7.")
    assert ("user", "Where is it?") in contents and contents[-1] == ("operator", "Here")
    seqs = [e["seq"] for e in exported["events"]]
    assert seqs == list(range(1, Event.objects.filter(session=session).count() + 1))


def test_exporting_an_unknown_session_raises_not_found():
    with pytest.raises(SessionNotFound):
        exports.export_session(uuid.uuid4())

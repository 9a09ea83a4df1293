"""Typed replies on the operators' surfaces: the admin transcript and the console queue."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from durable_sessions.models import Control
from handoff_console import queue
from tests.factories import make_user
from tests.test_api_approvals import waiting_call

pytestmark = [pytest.mark.django_db]


def test_the_admin_transcript_shows_reasoning_and_tool_calls_as_text(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    session, call = waiting_call()
    from durable_sessions.models import MessagePart

    MessagePart.objects.filter(pk=call.pk).update(input={"order_id": "<script>x</script>"})
    admin = make_user("root", staff=True)
    admin.is_superuser = True
    admin.save()
    client = Client()
    client.force_login(admin)
    page = client.get(reverse("admin:durable_sessions_durablesession_change", args=[session.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Tool call refund_order (Awaiting approval)" in html
    assert "approval by the customer or an operator: pending" in html and "Reasoning" in html
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html


def test_the_queue_shows_a_session_awaiting_approval():
    session, _ = waiting_call()
    operator = make_user("op", operator=True)
    snap = queue.snapshot(operator)
    (row,) = [r for r in snap["sections"]["ai"] if r["id"] == str(session.pk)]
    assert session.control == Control.AI and row["agent"] == "awaiting_approval"

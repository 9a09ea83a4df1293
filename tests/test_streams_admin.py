"""Generic streams in the admin: read-only pages; deleting goes through the service."""

from __future__ import annotations

import pytest
from django.urls import reverse

from durable_sessions.service import stream_create, stream_log
from durable_sessions.stream_models import Stream, StreamEntry

pytestmark = pytest.mark.django_db

LIST = "admin:durable_sessions_stream_changelist"


def make_stream(path: str, body: bytes = b"data") -> Stream:
    stream_create.create(stream_create.CreateRequest(path=path, content_type="text/plain"))
    stream_log.append(path, body, content_type="text/plain")
    return Stream.objects.get(path=path)


def test_streams_are_listed_with_their_tail_and_paths_shown_as_text(admin_client):
    make_stream("<b>markup</b>")
    page = admin_client.get(reverse(LIST)).content.decode()
    assert "&lt;b&gt;markup&lt;/b&gt;" in page and "<b>markup</b>" not in page
    stream = Stream.objects.get()
    detail = admin_client.get(reverse("admin:durable_sessions_stream_change", args=[stream.pk]))
    assert (
        detail.status_code == 200 and "0000000000000001_0000000000000004" in detail.content.decode()
    )


def test_streams_cannot_be_added_or_edited_in_the_admin(admin_client):
    stream = make_stream("a")
    assert admin_client.get(reverse("admin:durable_sessions_stream_add")).status_code == 403
    change = reverse("admin:durable_sessions_stream_change", args=[stream.pk])
    admin_client.post(change, {"path": "b", "closed": "on"})
    assert Stream.objects.get().path == "a" and not Stream.objects.get().closed


def test_the_delete_action_deletes_through_the_service(admin_client):
    source = make_stream("source")
    stream_create.create(stream_create.CreateRequest(path="fork", forked_from="source"))
    gone = make_stream("gone")
    response = admin_client.post(
        reverse(LIST), {"action": "delete_streams", "_selected_action": [source.pk, gone.pk]}
    )
    assert response.status_code == 302
    # The source is kept, hidden, for its fork; the other is deleted with its entries.
    assert set(Stream.objects.values_list("path", "soft_deleted")) == {
        ("source", True),
        ("fork", False),
    }
    assert not StreamEntry.objects.filter(stream_id=gone.pk).exists()

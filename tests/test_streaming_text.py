"""A streaming reply's text is read from its deltas in one query, however long it grew,
cut parts included (their deltas leave the content)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from durable_sessions import service
from durable_sessions.models import Message, MessagePart
from durable_sessions.service import parts
from durable_sessions.service.deltas import _Delta, write_batch
from durable_sessions.service.text import current_content, streaming_text, with_part_text

pytestmark = [pytest.mark.django_db]


def reply_with_a_cut_part(deltas: int) -> tuple[Message, MessagePart, MessagePart]:
    """A streaming reply: a text part cut after ``deltas`` deltas, then its restart with
    as many."""
    session = service.create_session(visitor=f"v-text-{deltas}")
    service.post_customer_message(session.id, "tell me")
    reply = service.start_assistant_message(session.id)
    cut = parts.start_part(reply.pk, "text", index=0)
    write_batch([_Delta(session.id, reply.pk, "old ", cut.pk, cut.wire_id)] * deltas)
    parts.cut_part(cut.pk)
    again = parts.start_part(reply.pk, "text", index=1)
    write_batch([_Delta(session.id, reply.pk, "new ", again.pk, again.wire_id)] * deltas)
    reply = Message.objects.get(pk=reply.pk)
    return reply, MessagePart.objects.get(pk=cut.pk), MessagePart.objects.get(pk=again.pk)


def queries_of(call) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as captured:
        result = call()
    return len(captured.captured_queries), result


@pytest.mark.parametrize("deltas", [1, 300])
def test_a_reply_s_text_takes_one_query_whatever_its_length(deltas):
    reply, cut, again = reply_with_a_cut_part(deltas)
    count, streamed = queries_of(lambda: streaming_text(reply))
    assert count == 1
    assert streamed.content == "new " * deltas  # the cut part's text left the content
    assert streamed.part(again) == "new " * deltas
    assert cut.text == "old " * deltas  # written once, when it was cut
    count, content = queries_of(lambda: current_content(reply))
    assert (count, content) == (1, "new " * deltas)
    count, part_text = queries_of(lambda: streaming_text(reply, part_id=again.wire_id))
    assert (count, part_text.part(again)) == (1, "new " * deltas)


def test_growing_parts_of_several_replies_take_one_query_each_and_one_for_the_replies():
    *_, first_part = reply_with_a_cut_part(3)
    *_, second_part = reply_with_a_cut_part(40)
    growing = [first_part, second_part]
    for part in growing:
        part.text = ""
    count, _ = queries_of(lambda: with_part_text(growing))
    assert count == 1 + 2
    assert [p.text for p in growing] == ["new " * 3, "new " * 40]

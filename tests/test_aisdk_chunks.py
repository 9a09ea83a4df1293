"""Every part type of a reply, as UI message stream chunks, applied by each pinned AI SDK
release (tests/aisdk/validate.mjs): live and after compaction the SDK builds the same
message; ai 5 gets only chunks its strict schema knows."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from durable_sessions import service
from durable_sessions.aisdk.chunks import AnswerChunks
from durable_sessions.aisdk.follow import DONE, active_answer_start, sse, sse_all
from durable_sessions.delivery.replay import read_events
from durable_sessions.models import Message, PartType
from durable_sessions.service import compaction, parts
from tests import services
from tests.factories import anonymous_session
from tests.live import ROOT
from tests.test_compaction import delta

pytestmark = [pytest.mark.django_db(transaction=True)]


def a_reply_of_every_kind() -> tuple[Any, Message]:
    session, _ = anonymous_session("v-chunks")
    service.post_customer_message(session.id, "hello", client_id="u1")
    reply = service.start_assistant_message(session.id)
    thinking = parts.start_part(reply.pk, PartType.REASONING)
    delta(reply, "Let me ", thinking)
    delta(reply, "think.", thinking)
    parts.end_part(thinking.pk)
    text = parts.start_part(reply.pk, PartType.TEXT)
    delta(reply, "Looking it up. ", text)
    service.post_system_message(session.id, "An operator is watching.")
    delta(reply, "Still looking.", text)
    parts.end_part(text.pk)
    call = parts.start_part(reply.pk, PartType.TOOL_CALL, tool_name="lookup", tool_call_id="c1")
    delta(reply, '{"q": "order"}', call)
    parts.tool_input_ready(call.pk, {"q": "order"})
    parts.finish_tool(call.pk, output={"status": "shipped"})
    failed = parts.start_part(reply.pk, PartType.TOOL_CALL, tool_name="lookup", tool_call_id="c2")
    parts.tool_input_ready(failed.pk, {"q": "other"})
    parts.finish_tool(failed.pk, error="not found")
    parts.start_part(reply.pk, PartType.DATA, data={"name": "weather", "data": {"t": 21}})
    parts.start_part(
        reply.pk, PartType.SOURCE, data={"url": "https://example.com/a", "title": "A"}, step=1
    )
    after = parts.start_part(reply.pk, PartType.TEXT, step=1)
    delta(reply, "It shipped.", after)
    parts.end_part(after.pk)
    service.finish_assistant_message(reply.pk)
    return session, reply


def stream_of(session: Any, after: int, approvals: bool) -> bytes:
    chunks = AnswerChunks(approvals=approvals, session_id=str(session.pk))
    body = b""
    for frame in read_events(session.pk, after):
        for chunk in chunks.feed(frame):
            body += sse(chunk)
    assert chunks.finished
    return body + DONE


def applied(release: str, body: bytes) -> dict[str, Any]:
    done = subprocess.run(
        ["node", str(ROOT / "tests" / "aisdk" / "validate.mjs"), release],
        input=body,
        cwd=ROOT / "tests",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return json.loads(done.stdout)


def shape(message: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (
            p["type"],
            p.get("state"),
            p.get("text"),
            p.get("output"),
            p.get("errorText"),
            p.get("data"),
        )
        for p in message["parts"]
        if p["type"] != "step-start"
    ]


@pytest.mark.parametrize("release", ["ai-5", "ai-6", "ai-7"])
def test_every_part_type_live_and_compacted(release):
    services.require_node_packages()
    session, reply = a_reply_of_every_kind()
    after = reply.seq - 1
    live = applied(release, stream_of(session, after, release != "ai-5"))
    assert live["id"] == str(reply.pk)
    notice = Message.objects.get(session=session, role="system")
    assert shape(live) == [
        ("reasoning", "done", "Let me think.", None, None, None),
        ("text", "done", "Looking it up. Still looking.", None, None, None),
        (
            "data-notice",
            None,
            None,
            None,
            None,
            {
                "messageId": str(notice.pk),
                "role": "system",
                "author": notice.author.display_name,
                "content": "An operator is watching.",
            },
        ),
        ("tool-lookup", "output-available", None, {"status": "shipped"}, None, None),
        ("tool-lookup", "output-error", None, None, "not found", None),
        ("data-weather", None, None, None, None, {"t": 21}),
        ("source-url", None, None, None, None, None),
        ("text", "done", "It shipped.", None, None, None),
    ]
    assert live["metadata"]["state"] == "completed"
    compaction.compact_message(reply.pk)
    compacted = applied(release, stream_of(session, after, release != "ai-5"))
    # The notice was in the middle: the snapshot tells the parts, the notice follows.
    assert sorted(map(str, shape(compacted))) == sorted(map(str, shape(live)))


def test_an_answer_is_active_from_the_post_until_its_reply_ends():
    session, _ = anonymous_session("v-idle")
    assert active_answer_start(session.pk) is None
    service.post_customer_message(session.id, "hi", client_id="u1")
    # A pending run, no reply yet: the answer is active, read after the current tail.
    session.refresh_from_db()
    assert active_answer_start(session.pk) == session.last_seq


def test_a_page_written_at_once_is_the_same_bytes_as_chunk_by_chunk():
    page = [
        {"type": "start", "messageId": "7", "messageMetadata": {"sessionId": "s"}},
        {"type": "text-delta", "id": "m7p0", "delta": 'caf\u00e9 "quoted"\n'},
        {"type": "finish", "messageMetadata": {"state": "completed"}},
    ]
    assert sse_all(page) == b"".join(sse(chunk) for chunk in page)
    assert (
        sse(page[1])
        == b'data: {"type":"text-delta","id":"m7p0","delta":"caf\\u00e9 \\"quoted\\"\\n"}\n\n'
    )
    assert sse_all([]) == b""


def test_an_answer_to_another_message_is_not_this_requests():
    chunks = AnswerChunks(asked=5)
    other = {"id": 8, "role": "assistant", "parts": [], "answers": [6]}
    mine = {"id": 9, "role": "assistant", "parts": [], "answers": [5]}
    assert chunks.feed({"type": "message.created", "data": {"message": other}}) == []
    assert chunks.reply_id is None
    assert (
        chunks.feed({"type": "message.created", "data": {"message": mine}})[0]["messageId"] == "9"
    )

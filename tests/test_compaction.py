"""Streaming text lives in the log until a reply ends; compaction folds a finished reply's
deltas into message.snapshot events, and a resume after any seq stays exact."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.management import call_command
from django.test import AsyncClient
from django.urls import reverse
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from durable_sessions import service, wire
from durable_sessions.delivery.replay import read_events, read_events_page, read_wire
from durable_sessions.models import DurableSession, Event, Message, MessagePart, PartType
from durable_sessions.runtime.worker import Worker
from durable_sessions.service import compaction, parts
from durable_sessions.service.deltas import _Delta, write_batch
from durable_sessions.service.text import current_content, streaming_text
from durable_sessions.service.validation import scrub
from durable_sessions.stream_offsets import format_offset
from tests.factories import anonymous_session, make_user, open_ws, visitor_session
from tests.fuzzing import FUZZ
from tests.hypothesis_profiles import examples
from tests.transcripts import Gap, Transcript

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async
# Reads from async tests go through database_sync_to_async, which closes its connection:
# one left open would keep pytest-django from dropping a PostgreSQL test database.
# Each example writes and compacts a session: fewer of them than the fuzz tests of input.
FUZZ_DB = hypothesis_settings(FUZZ, max_examples=examples(15))


def delta(message: Message, text: str, part: MessagePart | None = None) -> int:
    """Append one delta (of ``part``, or of a reply without parts) as the runtime does:
    what a model wrote, scrubbed of what no database stores."""
    text = scrub(text)
    is_text = part is None or part.type == PartType.TEXT
    (seq,) = write_batch(
        [
            _Delta(
                message.session_id,
                message.pk,
                text,
                part.pk if part else None,
                part.wire_id if part else None,
                is_text,
            )
        ]
    )
    assert isinstance(seq, int), seq
    return seq


def typed_reply(session: DurableSession, *, interleave: bool = True) -> Message:
    """A finished reply with reasoning, text, a tool call and more text; a customer's
    message arrives in the middle of it."""
    reply = service.start_assistant_message(session.id)
    thinking = parts.start_part(reply.pk, PartType.REASONING)
    for word in ("The ", "user ", "asks."):
        delta(reply, word, thinking)
    parts.end_part(thinking.pk)
    text = parts.start_part(reply.pk, PartType.TEXT)
    for i in range(5):
        delta(reply, f"Looking {i}. ", text)
    if interleave:
        service.post_customer_message(session.id, "still there?", client_id="c-mid")
    for i in range(3):
        delta(reply, f"é{i} ", text)
    parts.end_part(text.pk)
    call = parts.start_part(
        reply.pk, PartType.TOOL_CALL, tool_name="lookup", tool_call_id="call-1", step=0
    )
    delta(reply, '{"q": ', call)
    delta(reply, '"order"}', call)
    parts.tool_input_ready(call.pk, {"q": "order"})
    parts.finish_tool(call.pk, output={"status": "shipped"})
    after = parts.start_part(reply.pk, PartType.TEXT, step=1)
    for word in ("It ", "shipped."):
        delta(reply, word, after)
    service.finish_assistant_message(reply.pk)
    return reply


def build_session() -> tuple[DurableSession, list[int]]:
    """A session with a typed reply, a reply without parts taken over mid-answer (a
    handoff in the middle), the operator's answer, and a plain reply after the hand back."""
    session, _ = anonymous_session("v-compact")
    operator = make_user("op-compact", operator=True)
    service.post_customer_message(session.id, "where is my order?")
    first = typed_reply(session)
    second = service.start_assistant_message(session.id)
    for i in range(4):
        delta(second, f"chunk {i}; ")
    service.take_over(session.id, operator)
    service.operator_reply(session.id, operator=operator, content="I'm on it.")
    service.hand_back(session.id, operator)
    third = service.start_assistant_message(session.id)
    for i in range(6):
        delta(third, f"w{i} ")
    service.finish_assistant_message(third.pk)
    return DurableSession.objects.get(pk=session.pk), [first.pk, second.pk, third.pk]


def test_a_streaming_reply_is_read_from_its_deltas_and_written_once_when_it_ends():
    session, _ = anonymous_session("v-text")
    reply = service.start_assistant_message(session.id)
    part = parts.start_part(reply.pk, PartType.TEXT)
    for i in range(3):
        delta(reply, f"t{i} ", part)
    stored = Message.objects.get(pk=reply.pk)
    # Deltas do not rewrite the reply: the stored text stays empty while it streams.
    assert stored.content == ""
    assert MessagePart.objects.get(pk=part.pk).text == ""
    assert current_content(stored) == "t0 t1 t2 "
    assert streaming_text(stored).parts == {part.wire_id: "t0 t1 t2 "}
    assert parts.part_length(part.pk) == len("t0 t1 t2 ")
    parts.end_part(part.pk)
    assert MessagePart.objects.get(pk=part.pk).text == "t0 t1 t2 "
    service.finish_assistant_message(reply.pk)
    assert Message.objects.get(pk=reply.pk).content == "t0 t1 t2 "
    end = Event.objects.get(session=session, type=wire.MESSAGE_COMPLETED)
    assert end.payload["length"] == len("t0 t1 t2 ")


def test_a_takeover_keeps_the_partial_text_assembled_from_the_log():
    session, _ = anonymous_session("v-take")
    operator = make_user("op-take", operator=True)
    reply = service.start_assistant_message(session.id)
    thinking = parts.start_part(reply.pk, PartType.REASONING)
    delta(reply, "hmm", thinking)
    call = parts.start_part(reply.pk, PartType.TOOL_CALL, tool_name="t", tool_call_id="c")
    delta(reply, '{"a":', call)
    service.take_over(session.id, operator)
    reply.refresh_from_db()
    assert reply.state == "cancelled"
    assert MessagePart.objects.get(pk=thinking.pk).text == "hmm"
    cancelled = MessagePart.objects.get(pk=call.pk)
    assert (cancelled.state, cancelled.text) == ("cancelled", '{"a":')


def test_the_rest_api_shows_a_streaming_reply_with_its_text_so_far(client):
    session, store = anonymous_session("v-rest")
    client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
    reply = service.start_assistant_message(session.id)
    part = parts.start_part(reply.pk, PartType.TEXT)
    delta(reply, "partial ", part)
    delta(reply, "answer", part)
    response = client.get(reverse("durable_sessions:session-messages", args=[session.id]))
    assert response.status_code == 200, response.content
    shown = {m["id"]: m for m in response.json()["messages"]}[reply.pk]
    assert shown["content"] == "partial answer"
    assert shown["parts"][0]["text"] == "partial answer"


def test_resume_after_every_seq_of_a_compacted_session_is_exact():
    session, replies = build_session()
    before = read_events(session.id, 0, limit=100_000)
    assert [f["seq"] for f in before] == list(range(1, session.last_seq + 1))
    expected = Transcript().apply_all(before)
    # The stored text, written once at each end, is what the deltas made.
    for message in Message.objects.filter(pk__in=replies):
        shown = expected.messages[message.pk]
        assert message.content == shown["content"]
    # What a client had seen after each seq, before compaction.
    seen = [Transcript()]
    for frame in before:
        seen.append(seen[-1].copy().apply_all([frame]))

    done = compaction.compact_due(after_seconds=0)
    assert done.messages == 3 and done.deleted > 0
    after = read_events(session.id, 0, limit=100_000)
    assert len(after) == len(before) - done.deleted
    assert {f["type"] for f in after}.isdisjoint({wire.MESSAGE_DELTA, wire.PART_DELTA})
    assert all(f["seq"] == b["seq"] for f, b in zip(after[-1:], before[-1:], strict=True))
    assert DurableSession.objects.get(pk=session.pk).last_seq == session.last_seq

    for k in range(session.last_seq + 1):
        rest = read_events(session.id, k, limit=100_000)
        resumed = seen[k].copy().apply_all(rest)
        assert resumed.last_seq == session.last_seq
        assert resumed.shown() == expected.shown(), f"resume after seq {k}"
        # The other readers of a range: pages (REST, long-poll, streams) and wire text.
        page, more = read_events_page(session.id, k, limit=5, max_chars=10_000)
        assert page == rest[:5] and more == (len(rest) > 5)
        wire_rows = read_wire(session.id, k, limit=100_000)
        assert [seq for seq, _ in wire_rows] == [f["seq"] for f in rest]


def test_a_compacted_reply_takes_at_most_three_rows():
    session, _ = anonymous_session("v-rows")
    reply = service.start_assistant_message(session.id)
    for i in range(200):
        delta(reply, f"{i} ")
    service.finish_assistant_message(reply.pk)
    rows = Event.objects.filter(session=session, seq__gte=reply.seq)
    assert rows.count() == 202
    compaction.compact_message(reply.pk)
    assert list(rows.values_list("type", flat=True)) == [
        wire.MESSAGE_CREATED,
        wire.MESSAGE_SNAPSHOT,
        wire.MESSAGE_COMPLETED,
    ]
    snapshot = rows.get(type=wire.MESSAGE_SNAPSHOT)
    assert snapshot.seq == reply.seq + 200 and snapshot.payload["from_seq"] == reply.seq + 1
    assert snapshot.payload["message"]["content"] == "".join(f"{i} " for i in range(200))
    # Twice is once.
    assert compaction.compact_message(reply.pk) == compaction.Compacted()


def test_a_streaming_reply_is_never_compacted():
    session, _ = anonymous_session("v-live")
    reply = service.start_assistant_message(session.id)
    delta(reply, "still going")
    assert compaction.compact_message(reply.pk) == compaction.Compacted()
    assert compaction.compact_due(after_seconds=0).messages == 0
    assert Event.objects.filter(session=session, type=wire.MESSAGE_DELTA).count() == 1


def test_a_gap_that_no_snapshot_covers_is_still_a_gap():
    session, _ = build_session()
    compaction.compact_due(after_seconds=0)
    frames = read_events(session.id, 0, limit=100_000)
    snapshot = next(f for f in frames if f["type"] == wire.MESSAGE_SNAPSHOT)
    reader = Transcript()
    reader.apply_all([f for f in frames if f["seq"] < snapshot["data"]["from_seq"] - 1])
    with pytest.raises(Gap):
        reader.apply(snapshot)


def test_compaction_waits_for_its_delay_and_the_command_reports_what_it_did(capsys):
    session, replies = build_session()
    assert compaction.compact_due(after_seconds=3600).messages == 0
    call_command("compact_events", "--older-than", "0", "--session", str(session.id))
    out = capsys.readouterr().out
    assert "compacted 3 replies" in out
    assert Message.objects.filter(pk__in=replies, compacted_at__isnull=False).count() == 3


@pytest.mark.parametrize(
    "args", [["--older-than", "-1"], ["--batch", "0"], ["--session", "not-an-id"]]
)
def test_the_command_refuses_bad_options(args):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("compact_events", *args)


def compacted_session() -> tuple[DurableSession, Any, list[dict[str, Any]], dict[str, Any]]:
    """A compacted session of the visitor ``v-compact``, its cookie store, its events
    before compaction and its first snapshot."""
    session, _ = build_session()
    before = read_events(session.id, 0, limit=100_000)
    compaction.compact_due(after_seconds=0)
    frames = read_events(session.id, 0, limit=100_000)
    snapshot = next(f for f in frames if f["type"] == wire.MESSAGE_SNAPSHOT)
    return session, visitor_session("v-compact"), before, snapshot


async def test_the_websocket_resumes_inside_a_compacted_range_with_the_snapshot():
    session, store, before, snapshot = await db(compacted_session)()
    inside = snapshot["data"]["from_seq"] + 1  # the client had seen part of the reply
    seen = Transcript().apply_all([f for f in before if f["seq"] <= inside])
    comm, frames = await open_ws(session.id, store=store, after_seq=inside)
    events = [f for f in frames if "at" in f and isinstance(f.get("seq"), int)]
    assert events[0] == snapshot
    resumed = seen.apply_all(events)
    assert resumed.shown() == Transcript().apply_all(before).shown()
    assert frames[-1] == {"type": "live", "last_seq": session.last_seq}
    await comm.disconnect()


async def test_rest_and_durable_streams_readers_resume_inside_a_compacted_range():
    session, store, before, snapshot = await db(compacted_session)()
    inside = snapshot["data"]["from_seq"]
    client = AsyncClient()
    client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
    url = reverse("durable_sessions:session-events", args=[session.id])
    listed = (await client.get(f"{url}?after_seq={inside}&limit=3")).json()
    assert listed["events"][0] == snapshot
    streamed = await client.get(f"/v1/session/{session.id}?offset={format_offset(inside)}")
    assert streamed.status_code == 200
    events = json.loads(streamed.content)
    assert events[0] == snapshot
    assert streamed["Stream-Next-Offset"] == format_offset(events[-1]["seq"])
    seen = Transcript().apply_all([f for f in before if f["seq"] <= inside])
    assert seen.apply_all(events).shown() == Transcript().apply_all(before).shown()


# One step of a random reply: a text or reasoning delta, the end of the current part, a
# customer's message in between, or a whole tool call.
steps = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["text", "reasoning"]), st.text(min_size=1, max_size=6)),
        st.tuples(st.sampled_from(["end", "customer", "tool"]), st.just("")),
    ),
    min_size=1,
    max_size=14,
)


@FUZZ_DB
@given(shape=steps, ending=st.sampled_from(["complete", "cancel", "fail"]))
@example(shape=[("text", "\x00")], ending="complete")  # PostgreSQL's jsonb refused it
def test_any_reply_compacts_to_the_transcript_a_resume_after_any_seq_shows(shape, ending):
    session, _ = anonymous_session(f"v-fuzz-{uuid.uuid4().hex[:8]}")
    reply = service.start_assistant_message(session.id)
    current: MessagePart | None = None
    for kind, text in shape:
        if kind in ("text", "reasoning"):
            if current is None or current.type != kind:
                if current is not None:
                    parts.end_part(current.pk)
                current = parts.start_part(reply.pk, kind)
            delta(reply, text, current)
        elif kind == "end" and current is not None:
            parts.end_part(current.pk)
            current = None
        elif kind == "customer":
            service.post_customer_message(session.id, "and?")
        elif kind == "tool":
            if current is not None:
                parts.end_part(current.pk)
                current = None
            call = parts.start_part(reply.pk, PartType.TOOL_CALL, tool_name="t")
            delta(reply, "{}", call)
            parts.tool_input_ready(call.pk, {})
            parts.finish_tool(call.pk, output=1)
    if ending == "complete":
        service.finish_assistant_message(reply.pk)
    elif ending == "cancel":
        service.cancel_reply(session.id)
    else:
        service.fail_assistant_message(reply.pk, "boom")
    last = DurableSession.objects.get(pk=session.pk).last_seq
    before = read_events(session.id, 0, limit=100_000)
    expected = Transcript().apply_all(before)
    assert Message.objects.get(pk=reply.pk).content == expected.messages[reply.pk]["content"]
    seen = [Transcript()]
    for frame in before:
        seen.append(seen[-1].copy().apply_all([frame]))
    compaction.compact_message(reply.pk)
    for k in range(last + 1):
        resumed = seen[k].copy().apply_all(read_events(session.id, k, limit=100_000))
        assert resumed.shown() == expected.shown(), f"resume after seq {k}"


async def test_the_runtime_worker_compacts_replies_that_ended_compact_after_ago(ds_config):
    ds_config(RUNNER="worker", COMPACT_AFTER=0.05, COMPACT_INTERVAL=0.05)

    def finished_reply() -> Message:
        session, _ = anonymous_session("v-worker")
        reply = service.start_assistant_message(session.id)
        for word in ("kept ", "whole"):
            delta(reply, word)
        service.finish_assistant_message(reply.pk)
        return reply

    reply = await db(finished_reply)()
    worker = Worker("compactor")
    worker.start()
    try:
        for _ in range(100):
            stored = await db(Message.objects.get)(pk=reply.pk)
            if stored.compacted_at is not None:
                break
            await asyncio.sleep(0.1)
    finally:
        await worker.stop()
    assert stored.compacted_at is not None
    types = await db(
        lambda: list(
            Event.objects.filter(session_id=reply.session_id).values_list("type", flat=True)
        )
    )()
    assert wire.MESSAGE_DELTA not in types and wire.MESSAGE_SNAPSHOT in types


async def test_the_runtime_worker_leaves_the_log_alone_when_compaction_is_off(ds_config):
    ds_config(RUNNER="worker", COMPACT_AFTER=0, COMPACT_INTERVAL=0.05)
    reply = await db(lambda: typed_reply(anonymous_session("v-off")[0], interleave=False))()
    worker = Worker("idle-compactor")
    worker.start()
    try:
        await asyncio.sleep(0.4)  # several passes of COMPACT_INTERVAL
    finally:
        await worker.stop()
    assert (await db(Message.objects.get)(pk=reply.pk)).compacted_at is None

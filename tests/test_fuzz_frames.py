"""Property-based fuzzing of the websocket frames (docs/protocol.md), through the routes.

For any frame, of any type, from the customer or an operator: the connection stays open,
every frame the server sends is valid UTF-8 JSON, an error frame has the documented
shape, and a frame answered with an error stores nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from hypothesis import given
from hypothesis import strategies as st

from durable_sessions import service
from durable_sessions.frames import CLIENT_FRAMES
from durable_sessions.models import DurableSession, Event, Message
from tests.factories import communicator, make_user, visitor_session
from tests.fuzzing import FUZZ, any_char, dumps, json_value, nasty_text, raw_json_text

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async
FIELDS = sorted({name for spec in CLIENT_FRAMES.values() for name in spec} | {"ref", "type"})
ERROR_KEYS = {"type", "code", "message", "field", "ref"}


def frame_objects() -> st.SearchStrategy[dict[str, Any]]:
    """Frames of a known type (or not) with any fields and values."""
    kind = st.one_of(st.sampled_from(sorted(CLIENT_FRAMES)), nasty_text, json_value)
    fields = st.dictionaries(st.one_of(st.sampled_from(FIELDS), nasty_text), json_value, max_size=4)
    return st.builds(lambda t, f: {"type": t, **f}, kind, fields)


frames = st.one_of(
    frame_objects().map(dumps),
    # Raw text: lone surrogates as characters, not escapes.
    frame_objects().map(lambda value: json.dumps(value, ensure_ascii=False)),
    raw_json_text,
    st.text(any_char, max_size=30),
    st.integers(65_000, 70_000).map(
        lambda n: '{"type": "message.send", "ref": "big", "content": "' + "x" * n + '"}'
    ),
    st.binary(max_size=30),
)


def stored() -> tuple[int, int, int]:
    return (DurableSession.objects.count(), Event.objects.count(), Message.objects.count())


@pytest.fixture
def people(ds_config: Any) -> dict[str, Any]:
    ds_config(RATE_LIMIT_FRAMES=1_000_000)
    operator = make_user("olga", operator=True)
    store = visitor_session("v-fuzz")
    session = service.create_session(visitor="v-fuzz", title="fuzzed")
    return {"session": session, "store": store, "operator": operator}


async def replies_until_pong(comm: Any, ref: str) -> list[dict[str, Any]]:
    """Every frame the server sends until the pong of ``ref``, checked as it arrives."""
    received = []
    while True:
        raw = await comm.receive_from(timeout=10)
        assert isinstance(raw, str), raw
        raw.encode("utf-8")  # Daphne could not send a lone surrogate: it would close 1011
        frame = json.loads(raw)
        if frame.get("type") == "pong" and frame.get("ref") == ref:
            return received
        received.append(frame)


async def ping(comm: Any, ref: str) -> list[dict[str, Any]]:
    """Send a ping; every frame the server sent before its pong."""
    await comm.send_json_to({"type": "ping", "ref": ref})
    return await replies_until_pong(comm, ref)


@pytest.mark.parametrize("who", ["customer", "operator"])
@FUZZ
@given(frame=frames)
async def test_any_frame_gets_an_answer_and_an_error_stores_nothing(people, who, frame):
    session = people["session"]
    if who == "customer":
        comm = communicator(session.id, store=people["store"])
    else:
        comm = communicator(session.id, user=people["operator"])
    connected, _ = await comm.connect(timeout=30)  # a loaded machine is slow
    assert connected
    await ping(comm, "ready")
    before = await db(stored)()
    # Not send_to: it refuses an empty frame, which a client can send.
    key = "bytes" if isinstance(frame, bytes) else "text"
    await comm.send_input({"type": "websocket.receive", key: frame})
    replies = await ping(comm, "after")
    errors = [r for r in replies if r.get("type") == "error"]
    for error in errors:
        assert set(error) <= ERROR_KEYS and {"code", "message"} <= set(error), error
        assert all(isinstance(error[key], str) for key in ("code", "message")), error
    if errors and not any(r.get("type") == "ack" for r in replies):
        assert await db(stored)() == before, f"an error frame ({errors}) stored something"
    await comm.disconnect()


# An approval answer: a real approval id sometimes, any values otherwise.
VALID_APPROVAL = "<the waiting call>"
approval_frames = st.fixed_dictionaries(
    {"type": st.just("approval.answer")},
    optional={
        "approval_id": st.one_of(st.just(VALID_APPROVAL), nasty_text, json_value),
        "approved": st.one_of(st.booleans(), json_value),
        "reason": st.one_of(nasty_text, json_value),
        "client_id": st.one_of(nasty_text, json_value),
        "ref": st.one_of(nasty_text, json_value),
    },
)


@FUZZ
@given(frame=approval_frames)
async def test_any_approval_answer_decides_at_most_once_and_errors_change_nothing(people, frame):
    session = people["session"]
    call = await db(_waiting_call)(session)
    if frame.get("approval_id") == VALID_APPROVAL:
        frame = {**frame, "approval_id": call.wire_id}
    comm = communicator(session.id, store=people["store"])
    connected, _ = await comm.connect(timeout=30)  # a loaded machine is slow
    assert connected
    await ping(comm, "ready")
    before = await db(_approval_state)(session)
    await comm.send_input({"type": "websocket.receive", "text": dumps(frame)})
    replies = await ping(comm, "after")
    if not any(r.get("type") == "ack" for r in replies):
        assert any(r.get("type") == "error" for r in replies)
        assert await db(_approval_state)(session) == before
    assert await db(_decided)(session) <= 1
    await comm.disconnect()


def _waiting_call(session: Any) -> Any:
    from durable_sessions.models import MessagePart
    from durable_sessions.service import parts

    existing = MessagePart.objects.filter(session=session, type="tool_call").first()
    if existing is not None:
        return existing
    reply = service.start_assistant_message(session.pk)
    call = parts.start_part(reply.pk, "tool_call", tool_name="refund_order")
    return parts.tool_input_ready(call.pk, {"order_id": "1"}, approvers="any")


def _approval_state(session: Any) -> tuple[Any, ...]:
    from durable_sessions.models import MessagePart

    states = tuple(MessagePart.objects.filter(session=session).values_list("state", "decision"))
    return (*stored(), DurableSession.objects.get(pk=session.pk).last_seq, states)


def _decided(session: Any) -> int:
    return (
        Event.objects.filter(session=session, type="tool.updated")
        .exclude(payload__state="awaiting-approval")
        .count()
    )

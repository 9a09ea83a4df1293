"""The websocket transport, in process: snapshot, replay, live, errors and access."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from durable_sessions import service
from durable_sessions.models import DurableSession, Message, ParticipantKind
from tests.factories import (
    anonymous_session,
    close,
    make_user,
    nothing_more,
    open_ws,
    recv,
    stream_text,
)

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async


async def last_seq(session) -> int:
    return await DurableSession.objects.values_list("last_seq", flat=True).aget(pk=session.pk)


async def test_connect_sends_snapshot_then_replay_then_live():
    session, store = await db(anonymous_session)()
    customer = await db(service.participant_for)(session.id, ParticipantKind.CUSTOMER)
    await service.apost_message(session.id, author=customer, content="hello", client_id="c1")
    comm, frames = await open_ws(session.id, store=store)
    assert [f["type"] for f in frames] == ["snapshot", "session.created", "message.created", "live"]
    snapshot = frames[0]
    assert snapshot["session"]["control"] == "ai" and snapshot["you"]["access"] == "owner"
    assert snapshot["you"]["participant_id"] == customer.pk
    assert [f["seq"] for f in frames[1:3]] == [1, 2] and frames[-1]["last_seq"] == 2
    await comm.disconnect()


async def test_resume_after_seq_sends_exactly_the_rest():
    session, store = await db(anonymous_session)()
    reply = await service.astart_assistant_message(session.id)
    for i in range(10):
        await stream_text(reply, f"w{i} ")
    comm, frames = await open_ws(session.id, store=store, after_seq=7)
    assert [f.get("seq") for f in frames[1:-1]] == [8, 9, 10, 11, 12]
    await comm.disconnect()


async def test_live_events_follow_the_replay_without_duplicates():
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    reply = await service.astart_assistant_message(session.id)
    await stream_text(reply, "Hi")
    await service.afinish_assistant_message(reply)
    got = [await recv(comm) for _ in range(3)]
    assert [(f["seq"], f["type"]) for f in got] == [
        (2, "message.created"),
        (3, "message.delta"),
        (4, "message.completed"),
    ]
    assert await nothing_more(comm, 0.3)
    await comm.disconnect()


async def test_send_message_is_acked_and_a_retry_stores_nothing_new():
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    frame = {"type": "message.send", "content": "hi", "client_id": "abc", "ref": 1}
    await comm.send_json_to(frame)
    frames = [await recv(comm) for _ in range(2)]
    ack = next(f for f in frames if f["type"] == "ack")
    assert ack["seq"] == 2 and ack["duplicate"] is False and ack["ref"] == 1
    assert ack["message"]["content"] == "hi" and ack["message"]["role"] == "user"
    await comm.send_json_to(frame)
    again = await recv(comm)
    assert again["type"] == "ack" and again["duplicate"] is True and again["seq"] == 2
    assert await nothing_more(comm, 0.3)
    assert await Message.objects.filter(session_id=session.id).acount() == 1
    await comm.disconnect()


BAD_FRAMES = [
    ("{not json", "bad_json", None),
    ("[1, 2]", "bad_frame", None),
    (json.dumps({"content": "x"}), "invalid_field", "type"),
    (json.dumps({"type": "message.explode"}), "unknown_type", "type"),
    (json.dumps({"type": "message.send", "client_id": "a"}), "invalid_field", "content"),
    (
        json.dumps({"type": "message.send", "content": 5, "client_id": "a"}),
        "invalid_field",
        "content",
    ),
    (json.dumps({"type": "message.send", "content": "x"}), "invalid_field", "client_id"),
    (
        json.dumps({"type": "message.send", "content": "", "client_id": "a"}),
        "invalid_field",
        "content",
    ),
    (json.dumps({"type": "ping", "extra": 1}), "invalid_field", "extra"),
    (json.dumps({"type": "ping", "ref": {"a": 1}}), "invalid_field", "ref"),
    (
        json.dumps({"type": "message.send", "content": "x" * 70_000, "client_id": "a"}),
        "too_large",
        None,
    ),
]


@pytest.mark.parametrize(("text", "code", "field"), BAD_FRAMES)
async def test_bad_frames_get_an_error_and_change_nothing(text, code, field):
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    await comm.send_to(text_data=text)
    error = await recv(comm)
    assert error["type"] == "error" and error["code"] == code, error
    assert error.get("field") == field and error["message"]
    # The connection stays usable and nothing was stored.
    await comm.send_json_to({"type": "ping", "ref": "p"})
    assert await recv(comm) == {"type": "pong", "ref": "p"}
    assert await last_seq(session) == 1
    await comm.disconnect()


async def test_binary_frames_are_refused():
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    await comm.send_to(bytes_data=b"\x00\x01")
    error = await recv(comm)
    assert error["code"] == "bad_frame"
    await comm.disconnect()


async def test_sending_too_fast_is_rate_limited(ds_config):
    ds_config(RATE_LIMIT_FRAMES=3, RATE_LIMIT_WINDOW=60)
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    for i in range(3):
        await comm.send_json_to({"type": "ping", "ref": i})
        assert (await recv(comm))["type"] == "pong"
    await comm.send_json_to(
        {"type": "message.send", "content": "spam", "client_id": "s", "ref": "late"}
    )
    error = await recv(comm)
    assert error["code"] == "rate_limited"
    assert await last_seq(session) == 1
    await comm.disconnect()


async def test_service_errors_become_error_frames():
    session, store = await db(anonymous_session)()
    await close(session)
    comm, _ = await open_ws(session.id, store=store)
    await comm.send_json_to({"type": "message.send", "content": "hi", "client_id": "x", "ref": 9})
    error = await recv(comm)
    assert (error["code"], error["ref"]) == ("session_closed", 9)
    await comm.disconnect()


async def test_client_id_conflict_is_an_error():
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    await comm.send_json_to({"type": "message.send", "content": "one", "client_id": "k"})
    await recv(comm)
    await recv(comm)
    await comm.send_json_to({"type": "message.send", "content": "two", "client_id": "k"})
    assert (await recv(comm))["code"] == "client_id_conflict"
    await comm.disconnect()


async def test_handoff_request_and_cancel_from_the_customer():
    session, store = await db(anonymous_session)()
    reply = await service.astart_assistant_message(session.id)
    await stream_text(reply, "Let me")
    comm, _ = await open_ws(session.id, store=store)
    await comm.send_json_to({"type": "reply.cancel"})
    frames = [await recv(comm) for _ in range(2)]
    assert {f["type"] for f in frames} == {"message.cancelled", "ack"}
    await comm.send_json_to({"type": "handoff.request", "reason": "a person please"})
    frames = [await recv(comm) for _ in range(2)]
    changed = next(f for f in frames if f["type"] == "control.changed")
    assert changed["data"]["control"] == "queued"
    assert next(f for f in frames if f["type"] == "ack")["changed"] is True
    await comm.disconnect()


async def test_after_seq_beyond_the_log_resets_the_client():
    session, store = await db(anonymous_session)()
    comm, frames = await open_ws(session.id, store=store, after_seq=99)
    assert frames[0] == {"type": "reset", "last_seq": 1}
    assert [f["type"] for f in frames[1:]] == ["snapshot", "session.created", "live"]
    await comm.disconnect()


async def test_every_device_of_a_user_gets_every_event():
    owner = await db(make_user)("dana")
    session = await service.acreate_session(owner=owner)
    devices = [(await open_ws(session.id, user=owner))[0] for _ in range(3)]
    await devices[0].send_json_to(
        {"type": "message.send", "content": "from laptop", "client_id": "l1"}
    )
    for index, device in enumerate(devices):
        frames = [await recv(device) for _ in range(2 if index == 0 else 1)]
        created = next(f for f in frames if f["type"] == "message.created")
        assert created["seq"] == 2 and created["data"]["message"]["content"] == "from laptop"
    for device in devices:
        assert await nothing_more(device, 0.2)
        await device.disconnect()


async def test_operator_message_takes_over_and_reaches_the_customer():
    session, store = await db(anonymous_session)()
    operator = await db(make_user)("olga", operator=True)
    customer, _ = await open_ws(session.id, store=store)
    console, frames = await open_ws(session.id, user=operator)
    assert frames[0]["you"]["access"] == "operator"
    await console.send_json_to({"type": "message.send", "content": "Olga here", "client_id": "o1"})
    got = [await recv(customer) for _ in range(4)]
    assert [f["type"] for f in got] == [
        "participant.joined",
        "control.changed",
        "message.created",  # the notice that she joined
        "message.created",
    ]
    assert got[2]["data"]["message"]["role"] == "system"
    assert got[-1]["data"]["message"]["role"] == "operator"
    assert got[-1]["data"]["message"]["author"]["display_name"] == "olga"
    for comm in (customer, console):
        await comm.disconnect()


async def test_operators_cannot_ask_for_a_handoff():
    session, _ = await db(anonymous_session)()
    operator = await db(make_user)("olga", operator=True)
    comm, _ = await open_ws(session.id, user=operator)
    await comm.send_json_to({"type": "handoff.request"})
    assert (await recv(comm))["code"] == "not_allowed"
    await comm.disconnect()


async def test_operator_only_frames_never_reach_the_customer():
    from durable_sessions.delivery.publish import ephemeral_wakeup, publish_now

    session, store = await db(anonymous_session)()
    operator = await db(make_user)("olga", operator=True)
    customer, _ = await open_ws(session.id, store=store)
    console, _ = await open_ws(session.id, user=operator)
    note = {"type": "note.created", "note": {"text": "customer seems upset"}}
    await publish_now([ephemeral_wakeup(session.id, note, operators_only=True)])
    assert await recv(console) == note
    assert await nothing_more(customer, 0.3)
    for comm in (customer, console):
        await comm.disconnect()


async def test_the_activity_group_hears_what_changes_a_queue_but_not_deltas():
    from channels.layers import get_channel_layer

    from durable_sessions.delivery.groups import activity_group

    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(activity_group(), channel)
    session, _ = await db(anonymous_session)()
    created = await asyncio.wait_for(layer.receive(channel), 5)
    assert created["types"] == ["session.created"] and created["session_id"] == str(session.id)
    reply = await service.astart_assistant_message(session.id)
    assert (await asyncio.wait_for(layer.receive(channel), 5))["types"] == ["message.created"]
    await stream_text(reply, "streaming text")
    await service.arequest_handoff(session.id, by=None, reason="help")
    # One wake-up for the whole handoff: the control change and the notice to the customer.
    handoff = await asyncio.wait_for(layer.receive(channel), 5)
    assert handoff["types"] == ["control.changed", "message.created"]
    await layer.group_discard(activity_group(), channel)

"""The session service: the one write path and its guarantees."""

from __future__ import annotations

import pytest
from django.db import connection

from durable_sessions import service
from durable_sessions.delivery import publish
from durable_sessions.errors import (
    ClientIdConflict,
    Conflict,
    InvalidInput,
    MessageFinished,
    NotInControl,
    ReplyInProgress,
    SessionClosed,
    SessionNotFound,
)
from durable_sessions.models import (
    Control,
    DurableSession,
    Event,
    HandoffRecord,
    Message,
    MessageState,
    ParticipantKind,
    Status,
)
from tests.factories import anonymous_session, make_user, seqs

pytestmark = pytest.mark.django_db


def customer(session):
    return service.participant_for(session.id, ParticipantKind.CUSTOMER)


def last_seq(session) -> int:
    return DurableSession.objects.values_list("last_seq", flat=True).get(pk=session.pk)


def test_create_session_logs_session_created_with_participants():
    session, _ = anonymous_session()
    event = Event.objects.get(session=session)
    assert (event.seq, event.type) == (1, "session.created")
    kinds = [p["kind"] for p in event.payload["participants"]]
    assert kinds == ["customer", "agent"]
    assert last_seq(session) == 1


def test_create_session_needs_an_owner():
    with pytest.raises(InvalidInput):
        service.create_session()
    assert not DurableSession.objects.exists()


def test_post_message_is_stored_once_per_client_id():
    session, _ = anonymous_session()
    first = service.post_message(session.id, author=customer(session), content="hi", client_id="c1")
    again = service.post_message(session.id, author=customer(session), content="hi", client_id="c1")
    assert not first.duplicate and again.duplicate
    assert again.message.pk == first.message.pk and again.seq == first.seq == 2
    assert Message.objects.filter(session=session).count() == 1
    assert seqs(session) == [1, 2]


def test_reused_client_id_with_other_content_is_refused_and_changes_nothing():
    session, _ = anonymous_session()
    service.post_message(session.id, author=customer(session), content="hi", client_id="c1")
    with pytest.raises(ClientIdConflict):
        service.post_message(session.id, author=customer(session), content="bye", client_id="c1")
    assert seqs(session) == [1, 2] and last_seq(session) == 2


@pytest.mark.parametrize(
    ("content", "client_id", "field"),
    [
        ("", "c1", "content"),
        ("   ", "c1", "content"),
        (42, "c1", "content"),
        ("x" * 16_001, "c1", "content"),
        ("nul\x00", "c1", "content"),
        ("ok", "", "client_id"),
        ("ok", "x" * 65, "client_id"),
        ("ok", 7, "client_id"),
    ],
)
def test_bad_message_input_names_the_field_and_stores_nothing(content, client_id, field):
    session, _ = anonymous_session()
    with pytest.raises(InvalidInput) as info:
        service.post_message(
            session.id, author=customer(session), content=content, client_id=client_id
        )
    assert info.value.field == field
    assert seqs(session) == [1] and last_seq(session) == 1


def test_unknown_session_is_not_found():
    session, _ = anonymous_session()
    with pytest.raises(SessionNotFound):
        service.cancel_reply("00000000-0000-0000-0000-000000000000")
    with pytest.raises(SessionNotFound):
        service.cancel_reply("not-a-uuid")
    assert last_seq(session) == 1


def test_assistant_reply_streams_and_completes():
    session, _ = anonymous_session()
    reply = service.start_assistant_message(session.id)
    for chunk in ["Hel", "lo ", "there"]:
        service.append_delta(reply, chunk)
    service.finish_assistant_message(reply)
    reply.refresh_from_db()
    assert reply.content == "Hello there" and reply.state == MessageState.COMPLETE
    types = list(Event.objects.filter(session=session).values_list("type", flat=True))
    assert types == ["session.created", "message.created"] + ["message.delta"] * 3 + [
        "message.completed"
    ]
    assert seqs(session) == list(range(1, 7))


def test_only_one_assistant_reply_streams_at_a_time():
    session, _ = anonymous_session()
    service.start_assistant_message(session.id)
    with pytest.raises(ReplyInProgress):
        service.start_assistant_message(session.id)
    assert last_seq(session) == 2


def test_cancel_keeps_partial_text_and_the_ai_never_writes_again():
    session, _ = anonymous_session()
    reply = service.start_assistant_message(session.id)
    service.append_delta(reply, "partial")
    assert len(service.cancel_reply(session.id)) == 1
    with pytest.raises(MessageFinished):
        service.append_delta(reply, " more")
    with pytest.raises(MessageFinished):
        service.finish_assistant_message(reply)
    reply.refresh_from_db()
    assert (reply.content, reply.state) == ("partial", MessageState.CANCELLED)
    assert Event.objects.filter(session=session).last().type == "message.cancelled"
    assert seqs(session) == [1, 2, 3, 4]


def test_takeover_cancels_the_reply_and_silences_the_ai():
    session, _ = anonymous_session()
    operator = make_user("op", operator=True)
    reply = service.start_assistant_message(session.id)
    service.append_delta(reply, "I think")
    service.change_control(session.id, Control.HUMAN, operator=operator, expect=(Control.AI,))
    with pytest.raises(NotInControl):
        service.append_delta(reply, " that")
    with pytest.raises(NotInControl):
        service.start_assistant_message(session.id)
    reply.refresh_from_db()
    assert (reply.content, reply.state) == ("I think", MessageState.CANCELLED)
    tail = list(Event.objects.filter(session=session).values_list("type", flat=True))[-2:]
    assert tail == ["message.cancelled", "control.changed"]


def test_a_second_claim_conflicts():
    session, _ = anonymous_session()
    alice, bob = make_user("alice", operator=True), make_user("bob", operator=True)
    service.change_control(session.id, Control.HUMAN, operator=alice, expect=(Control.AI,))
    with pytest.raises(Conflict) as info:
        service.change_control(session.id, Control.HUMAN, operator=bob, expect=(Control.AI,))
    assert info.value.details["assigned_operator_id"] == alice.pk
    assert DurableSession.objects.get(pk=session.pk).assigned_operator == alice


def test_operator_reply_takes_over_and_conflicts_with_another_operator():
    session, _ = anonymous_session()
    alice, bob = make_user("alice", operator=True), make_user("bob", operator=True)
    result = service.operator_reply(session.id, operator=alice, content="Hi, Alice here")
    session.refresh_from_db()
    assert (session.control, session.assigned_operator_id) == (Control.HUMAN, alice.pk)
    assert result.message.role == "operator" and result.message.author.display_name == "alice"
    before = last_seq(session)
    with pytest.raises(Conflict):
        service.operator_reply(session.id, operator=bob, content="Bob too")
    assert last_seq(session) == before


def test_handoff_request_queues_once():
    session, _ = anonymous_session()
    assert service.request_handoff(session.id, by=customer(session), reason="need a person")
    assert not service.request_handoff(session.id, by=customer(session))
    session.refresh_from_db()
    assert session.control == Control.QUEUED
    event = Event.objects.filter(session=session, type="control.changed").last()
    assert event.payload["control"] == "queued" and event.payload["reason"] == "need a person"


def test_closed_session_refuses_messages():
    session, _ = anonymous_session()
    assert service.close_session(session.id)
    assert not service.close_session(session.id)
    session.refresh_from_db()
    assert session.status == Status.CLOSED and session.closed_at
    with pytest.raises(SessionClosed):
        service.post_message(session.id, author=customer(session), content="hello?")
    # session.closed, then the notice that tells the customer
    assert last_seq(session) == 3
    notice = Message.objects.filter(session=session).last()
    assert (notice.role, notice.content) == ("system", "This conversation was closed.")


def test_failed_reply_keeps_text_and_is_marked_failed():
    session, _ = anonymous_session()
    reply = service.start_assistant_message(session.id)
    service.append_delta(reply, "half an ans")
    service.fail_assistant_message(reply, "agent crashed")
    reply.refresh_from_db()
    assert (reply.content, reply.state) == ("half an ans", MessageState.FAILED)
    assert Event.objects.filter(session=session).last().payload["error"] == "agent crashed"


@pytest.mark.django_db(transaction=True)
def test_events_are_published_only_after_commit(monkeypatch):
    published = []

    def spy(wakeups):
        for wakeup in wakeups:
            if wakeup.message["type"] != "session.events":
                continue
            # Called outside any transaction, and the events are already readable.
            seqs = [f["seq"] for f in wakeup.message["events"]]
            stored = Event.objects.filter(seq__in=seqs).count()
            published.append((connection.in_atomic_block, stored, seqs))

    monkeypatch.setattr(publish, "_send_committed", spy)
    session, _ = anonymous_session()
    service.post_message(session.id, author=customer(session), content="hi", client_id="a")
    assert published == [(False, 1, [1]), (False, 1, [2])]


@pytest.mark.django_db(transaction=True)
def test_nothing_is_published_when_the_transaction_rolls_back(monkeypatch):
    from django.db import transaction

    published = []
    monkeypatch.setattr(publish, "_send_committed", published.append)
    session, _ = anonymous_session()
    published.clear()
    with pytest.raises(RuntimeError), transaction.atomic():
        service.post_message(session.id, author=customer(session), content="hi")
        raise RuntimeError("host code failed after the call")
    assert published == [] and seqs(session) == [1] and last_seq(session) == 1


def test_take_over_is_audited_and_announced_to_the_customer():
    session, _ = anonymous_session()
    olga = make_user("olga", operator=True)
    service.take_over(session.id, olga)
    session.refresh_from_db()
    assert (session.control, session.assigned_operator_id) == (Control.HUMAN, olga.pk)
    types = list(Event.objects.filter(session=session).values_list("type", flat=True))
    assert types[-3:] == ["participant.joined", "control.changed", "message.created"]
    notice = Message.objects.filter(session=session).last()
    assert (notice.role, notice.content) == ("system", "olga joined the conversation.")
    record = HandoffRecord.objects.get(session=session)
    assert (record.action, record.from_control, record.to_control) == ("take_over", "ai", "human")
    assert record.actor == olga and record.operator == olga
    assert Event.objects.get(session=session, seq=record.seq).type == "control.changed"


def test_a_second_take_over_names_who_holds_the_session():
    session, _ = anonymous_session()
    olga, omar = make_user("olga", operator=True), make_user("omar", operator=True)
    service.take_over(session.id, olga)
    before = last_seq(session)
    with pytest.raises(Conflict, match="taken by olga"):
        service.take_over(session.id, omar)
    assert last_seq(session) == before and HandoffRecord.objects.count() == 1


def test_hand_back_and_transfer_need_the_holder():
    session, _ = anonymous_session()
    olga, omar = make_user("olga", operator=True), make_user("omar", operator=True)
    with pytest.raises(Conflict):
        service.hand_back(session.id, olga)  # nobody holds it yet
    service.take_over(session.id, olga)
    with pytest.raises(Conflict):
        service.transfer(session.id, omar, olga)  # omar does not hold it
    with pytest.raises(InvalidInput):
        service.transfer(session.id, olga, make_user("carl"))  # not an operator
    service.transfer(session.id, olga, omar)
    session.refresh_from_db()
    assert session.assigned_operator_id == omar.pk
    service.hand_back(session.id, omar)
    session.refresh_from_db()
    assert (session.control, session.assigned_operator_id) == (Control.AI, None)
    actions = list(HandoffRecord.objects.values_list("action", flat=True))
    assert actions == ["take_over", "transfer", "hand_back"]
    notices = list(Message.objects.filter(role="system").values_list("content", flat=True))
    assert notices[-2:] == [
        "omar has taken over the conversation.",
        "You are back with our assistant.",
    ]


def test_close_is_audited():
    session, _ = anonymous_session()
    olga = make_user("olga", operator=True)
    service.close_session(session.id, actor=olga, reason="resolved")
    record = HandoffRecord.objects.get(session=session)
    assert (record.action, record.actor, record.reason) == ("close", olga, "resolved")
    assert Event.objects.get(session=session, seq=record.seq).payload["reason"] == "resolved"

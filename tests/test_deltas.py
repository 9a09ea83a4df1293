"""Group commit of deltas: many sessions in one transaction, each still exact."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.utils import timezone

from durable_sessions import service
from durable_sessions.delivery.publish import make_async
from durable_sessions.errors import (
    InvalidInput,
    MessageFinished,
    NotInControl,
    RunNotOwned,
    SessionClosed,
)
from durable_sessions.models import (
    AgentRun,
    DurableSession,
    Event,
    Message,
    ParticipantKind,
    RunStatus,
)
from durable_sessions.service import deltas, runs
from durable_sessions.service.deltas import DeltaWriter
from durable_sessions.service.text import current_content
from durable_sessions.service.validation import scrub
from tests.conftest import merge_setting
from tests.factories import anonymous_session, close, make_user

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async


@database_sync_to_async
def text_of(message_id: int) -> str:
    """A reply's text as readers see it (assembled from its deltas while it streams)."""
    return current_content(Message.objects.get(pk=message_id))


async def streaming_sessions(count: int):
    sessions = [(await db(anonymous_session)(f"v{i}"))[0] for i in range(count)]
    replies = [await service.astart_assistant_message(s.id) for s in sessions]
    return sessions, replies


async def test_deltas_of_many_sessions_are_written_gapless_and_in_order():
    sessions, replies = await streaming_sessions(20)
    writer = DeltaWriter()

    async def stream(session, reply):
        return [await writer.append(session.id, reply.pk, f"t{i} ") for i in range(15)]

    results = await asyncio.gather(*(stream(s, r) for s, r in zip(sessions, replies, strict=True)))
    for session, reply, seqs in zip(sessions, replies, results, strict=True):
        assert seqs == list(range(3, 18))  # after session.created and message.created
        stored = [
            seq async for seq in Event.objects.filter(session=session).values_list("seq", flat=True)
        ]
        assert stored == list(range(1, 18))
        assert (await DurableSession.objects.aget(pk=session.pk)).last_seq == 17
        content = await text_of(reply.pk)
        assert content == "".join(f"t{i} " for i in range(15))


async def test_a_busy_writer_gathers_the_deltas_of_an_interval_in_one_transaction(
    settings, monkeypatch
):
    merge_setting(settings, "DURABLE_SESSIONS", {"GROUP_COMMIT_INTERVAL_MS": 2000})
    (first, second), (reply, other) = await streaming_sessions(2)
    batches: list[list[str]] = []
    write_batch = deltas.write_batch

    def spy(batch):
        batches.append([delta.text for delta in batch])
        return write_batch(batch)

    monkeypatch.setattr(deltas, "write_batch", spy)
    writer = DeltaWriter()
    # Idle: written at once, alone.
    assert await writer.append(first.id, reply.pk, "a ") == 3

    async def later():
        await asyncio.sleep(0.05)
        return await writer.append(second.id, other.pk, "c ")

    # Within the interval of that transaction: both wait for the next one, together.
    seqs = await asyncio.gather(writer.append(first.id, reply.pk, "b "), later())
    assert seqs == [4, 3]
    assert batches == [["a "], ["b ", "c "]]
    assert await text_of(reply.pk) == "a b "


async def test_a_busy_writer_keeps_its_connection_until_it_is_idle(monkeypatch):
    (first, second), (reply, other) = await streaming_sessions(2)
    loop = asyncio.get_running_loop()
    writing = asyncio.Event()
    queued = threading.Event()
    opened: list[bool] = []  # whether the thread's connection was open as a batch began
    write_batch = deltas.write_batch

    def spy(batch):
        opened.append(connection.connection is not None)
        if len(opened) == 1:
            loop.call_soon_threadsafe(writing.set)
            assert queued.wait(10)  # the next delta waits while this batch is written
        return write_batch(batch)

    monkeypatch.setattr(deltas, "write_batch", spy)
    writer = DeltaWriter()

    async def next_delta():
        await writing.wait()
        appended = asyncio.ensure_future(writer.append(second.id, other.pk, "b "))
        await asyncio.sleep(0)  # queued
        queued.set()
        return await appended

    assert await asyncio.gather(writer.append(first.id, reply.pk, "a "), next_delta()) == [3, 3]
    assert opened == [False, True]
    # Idle: back to the pool, as after any other database call.
    assert await database_sync_to_async(lambda: connection.connection is None)()


async def test_refused_deltas_change_nothing_and_do_not_stop_the_others():
    sessions, replies = await streaming_sessions(4)
    olga = await db(make_user)("olga", operator=True)
    await make_async(service.take_over)(sessions[1].id, olga)  # a human took over
    await service.acancel_reply(sessions[2].id)  # the customer pressed stop
    await close(sessions[3])
    before = {s.pk: (await DurableSession.objects.aget(pk=s.pk)).last_seq for s in sessions}
    writer = DeltaWriter()
    outcomes = await asyncio.gather(
        *(writer.append(s.id, r.pk, "late text") for s, r in zip(sessions, replies, strict=True)),
        return_exceptions=True,
    )
    assert outcomes[0] == before[sessions[0].pk] + 1
    assert isinstance(outcomes[1], NotInControl)
    assert isinstance(outcomes[2], MessageFinished)
    assert isinstance(outcomes[3], SessionClosed)
    for session in sessions[1:]:
        assert (await DurableSession.objects.aget(pk=session.pk)).last_seq == before[session.pk]
        last = await Event.objects.filter(session=session).order_by("-seq").afirst()
        assert last.seq == before[session.pk] and last.type != "message.delta"
    for reply in replies[1:]:
        assert "late text" not in (await text_of(reply.pk))


async def test_a_message_of_another_session_is_refused():
    sessions, replies = await streaming_sessions(2)
    writer = DeltaWriter()
    with pytest.raises(MessageFinished):
        await writer.append(sessions[0].id, replies[1].pk, "crossed wires")
    assert (await text_of(replies[1].pk)) == ""


async def test_deltas_queued_together_for_one_session_keep_their_order():
    sessions, replies = await streaming_sessions(2)
    writer = DeltaWriter()
    # Not awaited one by one: several deltas of each session share a transaction.
    seqs = await asyncio.gather(
        *(
            writer.append(s.id, r.pk, f"{n}.")
            for n in range(6)
            for s, r in zip(sessions, replies, strict=True)
        )
    )
    assert seqs[0::2] == list(range(3, 9)) and seqs[1::2] == list(range(3, 9))
    for reply in replies:
        assert (await text_of(reply.pk)) == "0.1.2.3.4.5."
    for session in sessions:
        stored = [
            e.payload["text"]
            async for e in Event.objects.filter(session=session, type="message.delta").order_by(
                "seq"
            )
        ]
        assert stored == [f"{n}." for n in range(6)]


async def test_a_refused_delta_gives_its_seq_back_to_the_session():
    sessions, replies = await streaming_sessions(1)
    session, old = sessions[0], replies[0]
    await service.afinish_assistant_message(old.pk)
    new = await service.astart_assistant_message(session.id)
    last_seq = (await DurableSession.objects.aget(pk=session.pk)).last_seq
    writer = DeltaWriter()
    outcomes = await asyncio.gather(
        writer.append(session.id, old.pk, "too late"),
        writer.append(session.id, new.pk, "fresh"),
        writer.append(session.id, old.pk, "still too late"),
        writer.append(session.id, new.pk, " text"),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], MessageFinished) and isinstance(outcomes[2], MessageFinished)
    assert outcomes[1] == last_seq + 1 and outcomes[3] == last_seq + 2
    assert (await DurableSession.objects.aget(pk=session.pk)).last_seq == last_seq + 2
    assert (await text_of(new.pk)) == "fresh text"
    assert "late" not in (await text_of(old.pk))


@pytest.mark.parametrize(
    ("text", "says"), [("a\x00b", "NUL"), ("a\ud800b", "surrogate"), ("", "non-empty")]
)
async def test_text_the_database_cannot_store_is_refused_before_any_write(text, says):
    sessions, replies = await streaming_sessions(2)
    before = (await DurableSession.objects.aget(pk=sessions[0].pk)).last_seq
    writer = DeltaWriter()
    outcomes = await asyncio.gather(
        writer.append(sessions[0].id, replies[0].pk, text),
        writer.append(sessions[1].id, replies[1].pk, "fine"),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], InvalidInput)
    assert outcomes[0].field == "text" and says in str(outcomes[0])
    assert outcomes[1] == 3  # the other stream's delta in the same batch is written
    assert (await DurableSession.objects.aget(pk=sessions[0].pk)).last_seq == before
    assert await text_of(replies[0].pk) == ""
    assert await text_of(replies[1].pk) == "fine"


@pytest.mark.parametrize("text", ["a\x00b", "a\ud800b"])
def test_a_single_append_refuses_the_same_text(text):
    session, _ = anonymous_session("v")
    reply = service.start_assistant_message(session.id)
    before = DurableSession.objects.get(pk=session.pk).last_seq
    with pytest.raises(InvalidInput):
        service.append_delta(reply.pk, text)
    assert DurableSession.objects.get(pk=session.pk).last_seq == before
    assert service.append_delta(reply.pk, "ok") == before + 1


def test_a_streaming_reply_leaves_the_rows_preview_on_the_newest_stored_text():
    # Queue and admin rows preview the newest message; a streaming reply has no stored
    # text until it ends, so the row keeps showing what was said last.
    session = service.create_session(visitor="v-preview")
    service.post_customer_message(session.id, "where is my parcel?")
    reply = service.start_assistant_message(session.id)
    service.append_delta(reply, "It left ")
    row = DurableSession.objects.with_last_message(40).get(pk=session.pk)
    assert (row.last_role, row.last_preview) == ("user", "where is my parcel?")
    service.append_delta(reply, "the depot.")
    service.finish_assistant_message(reply)
    row = DurableSession.objects.with_last_message(40).get(pk=session.pk)
    assert (row.last_role, row.last_preview) == ("assistant", "It left the depot.")


def _claimed_reply(session, worker: str) -> tuple[AgentRun, Message]:
    """A run ``worker`` claimed, writing a streaming reply."""
    customer = service.participant_for(session.id, ParticipantKind.CUSTOMER)
    trigger = service.post_message(session.id, author=customer, content="hi").message
    run = AgentRun.objects.get(trigger=trigger)
    run = runs.claim(run.pk, worker)
    reply = service.start_assistant_message(session.id)
    runs.attach_message(run.pk, reply.pk)
    return run, reply


def test_a_worker_whose_run_was_reclaimed_cannot_write_to_the_reply(settings):
    merge_setting(settings, "DURABLE_SESSIONS", {"RUN_MAX_ATTEMPTS": 3})
    session, _ = anonymous_session("v-lease")
    run, reply = _claimed_reply(session, "worker-a")
    first = service.RunLease(run.pk, "worker-a", run.attempts)
    service.append_delta(reply, "Hel", lease=first)
    # worker-a stalls; its lease expires, the run is requeued and worker-b claims it.
    AgentRun.objects.filter(pk=run.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert service.crash_run(run.pk)
    second_run = runs.claim(run.pk, "worker-b")
    assert second_run is not None
    second = service.RunLease(run.pk, "worker-b", second_run.attempts)
    last_seq = DurableSession.objects.get(pk=session.pk).last_seq
    with pytest.raises(RunNotOwned, match=f"run {run.pk}"):
        service.append_delta(reply, "late text", lease=first)
    # Nothing stored: no event, no seq used, the reply's text unchanged.
    assert DurableSession.objects.get(pk=session.pk).last_seq == last_seq
    assert current_content(Message.objects.get(pk=reply.pk)) == "Hel"
    # The same worker name on a later attempt is a different lease.
    with pytest.raises(RunNotOwned):
        service.append_delta(reply, "late text", lease=service.RunLease(run.pk, "worker-a", 2))
    assert service.append_delta(reply, "lo", lease=second) == last_seq + 1
    assert current_content(Message.objects.get(pk=reply.pk)) == "Hello"


async def test_a_delta_for_a_finished_run_is_refused_and_the_others_are_written():
    session, _ = await db(anonymous_session)("v-finished")
    other, _ = await db(anonymous_session)("v-other")
    run, reply = await db(_claimed_reply)(session, "worker-a")
    other_run, other_reply = await db(_claimed_reply)(other, "worker-a")
    lease = service.RunLease(run.pk, "worker-a", run.attempts)
    other_lease = service.RunLease(other_run.pk, "worker-a", other_run.attempts)
    assert await db(runs.finish)(run.pk, "worker-a", RunStatus.COMPLETED)
    writer = DeltaWriter()
    outcomes = await asyncio.gather(
        writer.append(session.id, reply.pk, "after the end", lease=lease),
        writer.append(other.id, other_reply.pk, "still mine", lease=other_lease),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], RunNotOwned) and outcomes[0].code == "run_not_owned"
    assert isinstance(outcomes[1], int)
    assert (await text_of(reply.pk)) == ""
    assert (await text_of(other_reply.pk)) == "still mine"


@pytest.mark.parametrize("text", ["\x00", "a\x00b", "\ud800", "x\udfffy"])
def test_a_delta_no_database_stores_is_refused_naming_the_text(text):
    session, _ = anonymous_session("v-nul-delta")
    reply = service.start_assistant_message(session.id)
    last_seq = DurableSession.objects.get(pk=session.pk).last_seq
    with pytest.raises(InvalidInput) as refused:
        service.append_delta(reply, text)
    assert refused.value.field == "text"
    assert DurableSession.objects.get(pk=session.pk).last_seq == last_seq


def test_what_a_model_writes_is_scrubbed_of_what_no_database_stores():
    assert scrub("fine") == "fine"
    assert scrub("a\x00b\ud800c") == "a\ufffdb\ufffdc"


def test_deltas_move_a_sessions_updated_at_at_most_once_a_second(postgres):
    # Left alone, the session row's indexed columns do not change and PostgreSQL updates
    # it in place: a delta a second costs no index entries on the sessions table.
    session = service.create_session(visitor="v-updated")
    reply = service.start_assistant_message(session.id)
    service.append_delta(reply, "It left ")
    moved = DurableSession.objects.get(pk=session.pk).updated_at
    service.append_delta(reply, "the depot")
    row = DurableSession.objects.get(pk=session.pk)
    assert (row.updated_at, row.last_seq) == (moved, session.last_seq + 3)
    stale = moved - timedelta(seconds=2)
    DurableSession.objects.filter(pk=session.pk).update(updated_at=stale)
    service.append_delta(reply, " today.")
    assert DurableSession.objects.get(pk=session.pk).updated_at > moved
    service.finish_assistant_message(reply)
    assert current_content(Message.objects.get(pk=reply.pk)) == "It left the depot today."


def _generic_plans_of_batches() -> int:
    """How many times this connection ran the group commit's prepared statement with its
    generic plan (prepared statements outlive a test on a pooled connection)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0) "
            "FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%json_to_recordset%"],
        )
        generic, custom = cursor.fetchone()
    assert custom == 0  # planned once, not for every batch
    return generic


@pytest.mark.parametrize("prepared", [True, False])
def test_the_group_commit_prepares_its_statements_when_allowed(postgres, settings, prepared):
    from django.db import connection

    merge_setting(settings, "DURABLE_SESSIONS", {"PREPARED_STATEMENTS": prepared})
    session = service.create_session(visitor="v-prepared")
    reply = service.start_assistant_message(session.id)
    before = _generic_plans_of_batches()
    first = service.append_delta(reply, "one ")
    assert service.append_delta(reply, "two") == first + 1
    assert _generic_plans_of_batches() == before + (2 if prepared else 0)
    # Only these statements: Django's other queries stay unprepared (connection poolers).
    assert connection.connection.prepare_threshold is None
    service.finish_assistant_message(reply)
    assert current_content(Message.objects.get(pk=reply.pk)) == "one two"


@pytest.mark.parametrize("prepared", [True, False])
async def test_the_batch_reads_its_own_rows_when_the_lock_was_answered_first(
    postgres, settings, monkeypatch, prepared
):
    # In pipeline mode the server sends a result early once its output buffer is full
    # (the lock's ids of a few hundred sessions): the batch's outcomes must still come
    # from the batch statement, not from the lock's rows.
    import time

    import psycopg

    merge_setting(settings, "DURABLE_SESSIONS", {"PREPARED_STATEMENTS": prepared})
    execute = psycopg.Cursor.execute

    def answered_first(self, query, *args, **kwargs):
        result = execute(self, query, *args, **kwargs)
        if "FOR UPDATE" in str(query):
            time.sleep(0.05)  # the lock's rows reach the client before the batch goes out
        return result

    sessions, replies = await streaming_sessions(400)
    monkeypatch.setattr(psycopg.Cursor, "execute", answered_first)
    writer = DeltaWriter()
    seqs = await asyncio.gather(
        *(writer.append(s.id, r.pk, "one") for s, r in zip(sessions, replies, strict=True))
    )
    assert seqs == [3] * len(sessions)
    assert await text_of(replies[-1].pk) == "one"

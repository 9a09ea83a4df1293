"""The agent runtime in process: runs stream apart from connections, stop on cancel or
takeover, hand off, and a dead run is failed and escalated."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import close_old_connections
from django.utils import timezone

from durable_sessions import service
from durable_sessions.agents import AgentError, Handoff
from durable_sessions.models import (
    AgentRun,
    Control,
    DurableSession,
    Message,
    MessageState,
    ParticipantKind,
    RunStatus,
)
from durable_sessions.runtime.worker import Worker
from durable_sessions.service import runs
from tests.factories import anonymous_session, make_user, nothing_more, open_ws

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async
REPLY = " ".join(f"word{i}" for i in range(40))


def runtime_settings(settings, **overrides):
    settings.DURABLE_SESSIONS = {
        "RESYNC_INTERVAL": 0.2,
        "RUNNER": "worker",  # the test's own Worker executes the runs
        "FLUSH_INTERVAL_MS": 20,
        "RUN_SWEEP_INTERVAL": 0.2,
        "LEASE_TIMEOUT": 2.0,
        "HEARTBEAT_INTERVAL": 0.5,
        "AGENT_OPTIONS": {"thinking_seconds": 0, "tokens_per_second": 0, "reply": REPLY},
        **overrides,
    }


@contextlib.asynccontextmanager
async def running_worker(name: str) -> AsyncIterator[Worker]:
    """A worker executing runs in this test's event loop, stopped afterwards."""
    started = Worker(name)
    started.start()
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
async def worker(settings):
    runtime_settings(settings)
    started = Worker("test-worker")
    started.start()
    yield started
    await started.stop()


async def frames_until(comm, predicate, limit: int = 2000) -> list[dict]:
    """Read frames until one matches ``predicate`` (included); bounded."""
    got = []
    for _ in range(limit):
        frame = await comm.receive_json_from(timeout=10)
        got.append(frame)
        if predicate(frame):
            return got
    raise AssertionError("predicate never matched")


def is_end(frame: dict) -> bool:
    return frame.get("type") in ("message.completed", "message.cancelled", "message.failed")


def deltas(frames) -> str:
    return "".join(f["data"]["text"] for f in frames if f.get("type") == "message.delta")


async def send(comm, content: str, client_id: str) -> None:
    await comm.send_json_to({"type": "message.send", "content": content, "client_id": client_id})


async def wait_for_run(status: str, limit: float = 10) -> AgentRun:
    for _ in range(int(limit / 0.05)):
        run = await AgentRun.objects.order_by("-id").afirst()
        if run is not None and run.status == status:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"no run reached {status}")


async def test_a_user_message_starts_a_run_that_streams_the_reply(worker):
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    await send(comm, "hello", "c1")
    frames = await frames_until(comm, is_end)
    assert frames[-1]["type"] == "message.completed"
    assert deltas(frames) == REPLY
    statuses = [f["status"] for f in frames if f["type"] == "agent.status"]
    assert statuses[:1] == ["thinking"] and "streaming" in statuses
    assert statuses.count("thinking") == 1  # announced once, with the message
    seqs = [f["seq"] for f in frames if "at" in f]  # log events, not the ack
    assert seqs == list(range(2, 2 + len(seqs)))
    run = await wait_for_run(RunStatus.COMPLETED)
    reply = await Message.objects.aget(pk=run.message_id)
    assert (reply.content, reply.state, reply.role) == (REPLY, "complete", "assistant")
    await comm.disconnect()


async def test_deltas_are_coalesced_by_size_and_time(settings):
    runtime_settings(settings, FLUSH_INTERVAL_MS=60_000, FLUSH_MAX_CHARS=50)
    async with running_worker("w"):
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await send(comm, "hello", "c1")
        frames = await frames_until(comm, is_end)
        chunks = [f["data"]["text"] for f in frames if f.get("type") == "message.delta"]
        assert "".join(chunks) == REPLY
        assert len(chunks) < len(REPLY.split()) / 4
        assert all(len(chunk) >= 50 for chunk in chunks[:-1])
        await comm.disconnect()


async def test_the_run_goes_on_when_every_client_has_gone(settings):
    runtime_settings(
        settings,
        AGENT_OPTIONS={"thinking_seconds": 0, "tokens_per_second": 200, "reply": REPLY},
    )
    async with running_worker("w"):
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await send(comm, "hello", "c1")
        seen = await frames_until(comm, lambda f: f.get("type") == "message.delta")
        await comm.disconnect()
        run = await wait_for_run(RunStatus.COMPLETED)
        last = max(f["seq"] for f in seen if "at" in f)
        back, replayed = await open_ws(session.id, store=store, after_seq=last)
        assert deltas(seen) + deltas(replayed) == REPLY
        assert replayed[-2]["type"] == "message.completed"
        assert (await Message.objects.aget(pk=run.message_id)).content == REPLY
        await back.disconnect()


@pytest.fixture
async def slow_worker(settings):
    long_reply = " ".join(f"token{i}" for i in range(400))
    runtime_settings(
        settings,
        AGENT_OPTIONS={"thinking_seconds": 0, "tokens_per_second": 100, "reply": long_reply},
    )
    started = Worker("slow")
    started.start()
    yield started
    await started.stop()


async def test_cancel_mid_stream_keeps_the_partial_text_and_stops_the_run(slow_worker):
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    await send(comm, "tell me a lot", "c1")
    frames = []
    while sum(f.get("type") == "message.delta" for f in frames) < 3:
        frames += await frames_until(comm, lambda f: f.get("type") == "message.delta")
    await comm.send_json_to({"type": "reply.cancel"})
    frames += await frames_until(comm, lambda f: f.get("type") == "message.cancelled")
    assert await nothing_more(comm, 0.5)  # no AI text after the cancel
    run = await wait_for_run(RunStatus.CANCELLED)
    reply = await Message.objects.aget(pk=run.message_id)
    assert reply.state == MessageState.CANCELLED and reply.content == deltas(frames)
    assert 0 < len(reply.content) < 400 * 6
    await comm.disconnect()


async def test_takeover_mid_stream_silences_the_ai(slow_worker):
    session, store = await db(anonymous_session)()
    operator = await db(make_user)("olga", operator=True)
    customer, _ = await open_ws(session.id, store=store)
    await send(customer, "tell me a lot", "c1")
    await frames_until(customer, lambda f: f.get("type") == "message.delta")
    console, _ = await open_ws(session.id, user=operator)
    await send(console, "Olga here, I take it from here", "o1")
    frames = await frames_until(
        customer,
        lambda f: f.get("type") == "message.created" and f["data"]["message"]["role"] == "operator",
    )
    takeover = next(f for f in frames if f.get("type") == "control.changed")
    cancelled = next(f for f in frames if f.get("type") == "message.cancelled")
    assert cancelled["seq"] < takeover["seq"]
    assert not [
        f for f in frames if f.get("type") == "message.delta" and f["seq"] > takeover["seq"]
    ]
    assert await nothing_more(customer, 0.5)
    await wait_for_run(RunStatus.CANCELLED)
    for comm in (customer, console):
        await comm.disconnect()


async def test_cancel_while_the_agent_is_thinking(settings):
    runtime_settings(settings, AGENT_OPTIONS={"thinking_seconds": 30, "reply": REPLY})
    async with running_worker("w") as worker:
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await send(comm, "hello", "c1")
        await frames_until(comm, lambda f: f.get("type") == "agent.status")
        await wait_for_run(RunStatus.RUNNING)
        await comm.send_json_to({"type": "reply.cancel"})
        await wait_for_run(RunStatus.CANCELLED, limit=5)
        assert not await Message.objects.filter(role="assistant").aexists()
        # The executor is gone, not sleeping on: it ends within moments of the cancel
        # (its bookkeeping follows the committed status), long before the 30 s of thinking.
        for _ in range(50):
            if not worker.tasks:
                break
            await asyncio.sleep(0.1)
        assert not worker.tasks
        await comm.disconnect()


async def test_the_demo_agent_hands_off_when_asked_for_a_person(settings):
    runtime_settings(settings, AGENT_OPTIONS={"thinking_seconds": 0, "tokens_per_second": 0})
    async with running_worker("w"):
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await send(comm, "Can I talk to a human please?", "c1")
        frames = await frames_until(comm, lambda f: f.get("type") == "control.changed")
        changed = frames[-1]["data"]
        assert changed["control"] == "queued" and changed["by"]["kind"] == "agent"
        assert "talk to a human" in changed["summary"]
        assert any(f.get("type") == "message.completed" for f in frames)
        assert (await DurableSession.objects.aget(pk=session.pk)).control == Control.QUEUED
        await comm.disconnect()


def _dead_run(session) -> AgentRun:
    """A run left behind by a process that died mid-reply: running, lease expired."""
    customer = service.participant_for(session.id, ParticipantKind.CUSTOMER)
    trigger = service.post_message(session.id, author=customer, content="hi").message
    run = AgentRun.objects.get(trigger=trigger)
    claimed = runs.claim(run.pk, "dead-worker")
    reply = service.start_assistant_message(session.id)
    service.append_delta(reply, "half a rep")
    runs.attach_message(run.pk, reply.pk)
    AgentRun.objects.filter(pk=claimed.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    claimed.refresh_from_db()
    return claimed


async def test_a_dead_run_is_failed_escalated_and_shown_to_everyone(settings):
    runtime_settings(settings, RUN_MAX_ATTEMPTS=1)  # no retry: see test_run_retries
    session, store = await db(anonymous_session)()
    run = await db(_dead_run)(session)
    comm, first = await open_ws(session.id, store=store)
    assert first[0]["agent"]["status"] == "streaming"
    worker = Worker("reaper")
    await worker.sweep_once()
    # The state frame comes with the events of the same write, after them.
    frames = await frames_until(comm, lambda f: f.get("status") == "unresponsive")
    failed = next(f for f in frames if f.get("type") == "message.failed")
    assert failed["data"]["error"] == "the agent stopped responding"
    control = next(f for f in frames if f.get("type") == "control.changed")
    assert control["data"]["control"] == "queued"
    assert {"type": "agent.status", "status": "unresponsive", "run_id": run.pk} in frames
    reply = await Message.objects.aget(pk=run.message_id)
    assert (reply.state, reply.content) == (MessageState.FAILED, "half a rep")
    assert (await AgentRun.objects.aget(pk=run.pk)).status == RunStatus.CRASHED
    again, first = await open_ws(session.id, store=store)
    assert first[0]["agent"]["status"] == "unresponsive"
    for c in (comm, again):
        await c.disconnect()


async def test_a_slow_thinking_agent_is_never_reported_as_crashed(settings):
    runtime_settings(
        settings,
        LEASE_TIMEOUT=1.0,
        HEARTBEAT_INTERVAL=0.3,
        AGENT_OPTIONS={"thinking_seconds": 2.5, "tokens_per_second": 0, "reply": "done"},
    )
    worker, reaper = Worker("thinker"), Worker("reaper")
    worker.start()
    reaper.start()  # sweeps every 0.2 s, reaping any expired lease
    try:
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await send(comm, "hello", "c1")
        frames = await frames_until(comm, is_end)
        assert frames[-1]["type"] == "message.completed"
        assert "unresponsive" not in [f.get("status") for f in frames]
        await wait_for_run(RunStatus.COMPLETED)
        await comm.disconnect()
    finally:
        await worker.stop()
        await reaper.stop()


async def test_two_workers_never_run_the_same_run(settings):
    runtime_settings(settings)
    session, _ = await db(anonymous_session)()
    customer = await db(service.participant_for)(session.id, ParticipantKind.CUSTOMER)
    await service.apost_message(session.id, author=customer, content="hi")
    run = await AgentRun.objects.aget()
    first, second = Worker("one"), Worker("two")
    assert first.submit(run.pk) and second.submit(run.pk)
    await asyncio.gather(*first.tasks.values(), *second.tasks.values())
    assert await Message.objects.filter(role="assistant").acount() == 1
    assert (await AgentRun.objects.aget(pk=run.pk)).worker in ("one", "two")


def test_concurrent_claims_have_exactly_one_winner(postgres, settings):
    runtime_settings(settings)
    session, _ = anonymous_session()
    customer = service.participant_for(session.id, ParticipantKind.CUSTOMER)
    service.post_message(session.id, author=customer, content="hi")
    run = AgentRun.objects.get()
    barrier = threading.Barrier(8)
    winners: list[str] = []

    def claim(name: str) -> None:
        try:
            barrier.wait()
            if runs.claim(run.pk, name) is not None:
                winners.append(name)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    assert AgentRun.objects.get(pk=run.pk).worker == winners[0]


async def test_a_message_during_a_reply_is_answered_after_it(settings):
    runtime_settings(
        settings,
        AGENT_OPTIONS={"thinking_seconds": 0, "tokens_per_second": 200, "reply": "one two three"},
    )
    async with running_worker("w"):
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await send(comm, "first", "c1")
        await frames_until(comm, lambda f: f.get("type") == "message.delta")
        await send(comm, "second", "c2")
        frames = await frames_until(comm, is_end)
        frames += await frames_until(comm, is_end)
        completed = [f for f in frames if f.get("type") == "message.completed"]
        assert len(completed) == 2
        replies = [m async for m in Message.objects.filter(role="assistant").order_by("seq")]
        assert [r.content for r in replies] == ["one two three"] * 2
        user_second = await Message.objects.aget(client_id="c2")
        assert replies[1].seq > user_second.seq
        await comm.disconnect()


class FailingAgent:
    """Fails before saying anything."""

    def __init__(self, **options):
        pass

    async def stream(self, turn):
        raise AgentError("the model is down")
        yield ""  # pragma: no cover (makes this an async generator)


class LongWindedHandoffAgent:
    def __init__(self, **options):
        pass

    async def stream(self, turn):
        yield "Let me get someone."
        yield Handoff(reason="r" * 2000 + "\x00", summary="s" * 10_000)


class UnstorableTextAgent:
    """Streams characters no database stores (a NUL, a lone surrogate)."""

    def __init__(self, **options):
        pass

    async def stream(self, turn):
        yield "a\x00b"
        yield "c\ud800d"


async def test_characters_no_database_stores_stream_as_replacement_characters(settings):
    runtime_settings(settings, AGENT="tests.test_runtime.UnstorableTextAgent")
    async with running_worker("w"):
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await send(comm, "hello", "c1")
        frames = await frames_until(comm, is_end)
        assert frames[-1]["type"] == "message.completed"
        assert deltas(frames) == "a\ufffdbc\ufffdd"
        await wait_for_run(RunStatus.COMPLETED)
        reply = await Message.objects.aget(pk=frames[-1]["data"]["message_id"])
        assert reply.content == "a\ufffdbc\ufffdd"
        await comm.disconnect()


async def test_an_agent_that_fails_before_its_first_word_leaves_a_failed_reply(settings):
    runtime_settings(settings, AGENT="tests.test_runtime.FailingAgent")
    async with running_worker("w"):
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await send(comm, "hello", "c1")
        frames = await frames_until(comm, is_end)
        assert frames[-1]["type"] == "message.failed"
        assert frames[-1]["data"]["error"] == "the model is down"
        await wait_for_run(RunStatus.FAILED)
        await comm.disconnect()


async def test_an_oversized_handoff_brief_is_clipped_not_lost(settings):
    runtime_settings(settings, AGENT="tests.test_runtime.LongWindedHandoffAgent")
    async with running_worker("w"):
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await send(comm, "hello", "c1")
        frames = await frames_until(comm, lambda f: f.get("type") == "control.changed")
        data = frames[-1]["data"]
        assert data["control"] == "queued"
        assert data["reason"] == "r" * 500 and len(data["summary"]) == 4000
        await comm.disconnect()


def test_handed_back_marks_only_the_first_turn_after_a_hand_back(settings):
    runtime_settings(settings)
    from durable_sessions.runtime.turns import build_turn

    session, _ = anonymous_session()
    olga = make_user("olga", operator=True)
    assert not build_turn(session.id).handed_back
    service.take_over(session.id, olga)
    service.hand_back(session.id, olga)
    assert build_turn(session.id).handed_back
    reply = service.start_assistant_message(session.id)
    service.append_delta(reply, "Hello again")
    service.finish_assistant_message(reply)
    assert not build_turn(session.id).handed_back


def test_an_operator_retry_after_a_hand_back_does_not_take_over_again(settings):
    runtime_settings(settings)
    session, _ = anonymous_session()
    olga = make_user("olga", operator=True)
    first = service.operator_reply(session.id, operator=olga, content="Hi", client_id="o1")
    service.hand_back(session.id, olga)
    before = DurableSession.objects.get(pk=session.pk).last_seq
    again = service.operator_reply(session.id, operator=olga, content="Hi", client_id="o1")
    assert again.duplicate and again.message.pk == first.message.pk
    session.refresh_from_db()
    assert session.control == Control.AI and session.last_seq == before


async def test_a_run_waiting_behind_another_keeps_the_agent_thinking(settings):
    runtime_settings(
        settings,
        AGENT_OPTIONS={"thinking_seconds": 0, "tokens_per_second": 100, "reply": REPLY},
    )
    async with running_worker("w"):
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await send(comm, "first", "c1")
        await frames_until(comm, lambda f: f.get("type") == "message.delta")
        await send(comm, "second", "c2")  # while the first reply streams
        frames = await frames_until(comm, is_end)
        frames += await frames_until(comm, lambda f: f.get("type") == "agent.status")
        second = await AgentRun.objects.order_by("-id").afirst()
        assert frames[-1] == {"type": "agent.status", "status": "thinking", "run_id": second.pk}
        frames = await frames_until(comm, is_end)
        assert deltas(frames) == REPLY and frames[-1]["type"] == "message.completed"
        after = await frames_until(comm, lambda f: f.get("type") == "agent.status")
        assert after[-1]["status"] == "idle"
        await comm.disconnect()

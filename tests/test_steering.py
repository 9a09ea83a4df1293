"""Messages sent while the agent answers: queued, steering the answer, or interrupting it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from hypothesis import given, settings
from hypothesis import strategies as st

from durable_sessions import service
from durable_sessions.agents import Agent, HistoryMessage, Part, Turn
from durable_sessions.agents.demo import REPLIES
from durable_sessions.agents.openai_compatible import OpenAICompatibleAgent
from durable_sessions.errors import InvalidInput
from durable_sessions.frames import FrameError, parse
from durable_sessions.models import (
    AgentRun,
    DurableSession,
    Event,
    Message,
    MessageState,
    ParticipantKind,
    RunStatus,
)
from durable_sessions.runtime.turns import build_turn
from durable_sessions.service import runs, steering
from tests.factories import anonymous_session, make_user, open_ws
from tests.hypothesis_profiles import examples
from tests.test_runtime import frames_until, is_end, running_worker, runtime_settings

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async
# Sentences the demo reads steering after; long enough that a message sent after the first
# delta arrives well before the end.
SENTENCES = " ".join(f"Sentence {i} of the plan." for i in range(1, 101))


def _running(session) -> tuple[AgentRun, Any]:
    """A session whose agent is writing an answer: its run claimed, its reply streaming."""
    customer = service.participant_for(session.id, ParticipantKind.CUSTOMER)
    service.post_message(session.id, author=customer, content="first")
    run = runs.claim(AgentRun.objects.get().pk, "w")
    reply = service.start_assistant_message(session.id)
    service.append_delta(reply, "half an ans")
    runs.attach_message(run.pk, reply.pk)
    return run, customer


def test_without_a_busy_agent_every_mode_starts_a_run(settings):
    runtime_settings(settings)
    session, _ = anonymous_session()
    customer = service.participant_for(session.id, ParticipantKind.CUSTOMER)
    result = service.post_message(session.id, author=customer, content="hi", mode="steer")
    assert result.mode == "queue" and result.message.send_mode == ""
    assert AgentRun.objects.filter(trigger=result.message, status=RunStatus.PENDING).exists()


def test_queue_keeps_todays_behaviour(settings):
    runtime_settings(settings)
    session, _ = anonymous_session()
    run, customer = _running(session)
    result = service.post_message(session.id, author=customer, content="also", mode="queue")
    assert result.mode == "queue" and result.message.steer_run_id is None
    assert AgentRun.objects.filter(trigger=result.message, status=RunStatus.PENDING).exists()
    assert AgentRun.objects.get(pk=run.pk).status == RunStatus.RUNNING
    assert Message.objects.get(role="assistant").state == MessageState.STREAMING


def test_steer_goes_into_the_running_run_and_starts_none(settings):
    runtime_settings(settings)
    session, _ = anonymous_session()
    run, customer = _running(session)
    result = service.post_message(session.id, author=customer, content="shorter", mode="steer")
    assert result.mode == "steer" and result.message.steer_run_id == run.pk
    created = Event.objects.get(seq=result.seq)
    assert created.payload["message"]["mode"] == "steer"
    assert AgentRun.objects.count() == 1
    # Read once, with an event naming it; the run's history leaves it out, its turn has it.
    taken = steering.take(run.pk)
    assert [m.content for m in taken] == ["shorter"]
    event = Event.objects.filter(type="run.steered").get()
    assert event.payload == {
        "run_id": run.pk,
        "reply_id": run.message_id or AgentRun.objects.get(pk=run.pk).message_id,
        "message_ids": [result.message.pk],
    }
    assert steering.take(run.pk) == []
    turn = build_turn(session.id, AgentRun.objects.get(pk=run.pk).message_id, 1, run.pk)
    assert [m.content for m in turn.steered] == ["shorter"]
    assert "shorter" not in [m.content for m in turn.history]


def test_the_session_default_mode_applies_when_the_message_names_none(settings):
    runtime_settings(settings, DEFAULT_SEND_MODE="queue")
    session, _ = anonymous_session()
    DurableSession.objects.filter(pk=session.pk).update(metadata={"send_mode": "steer"})
    run, customer = _running(session)
    result = service.post_message(session.id, author=customer, content="and this")
    assert result.mode == "steer" and result.message.steer_run_id == run.pk


def test_an_agent_without_steering_gets_the_message_queued(settings):
    runtime_settings(settings, AGENT="tests.test_runtime.FailingAgent")
    session, _ = anonymous_session()
    _, customer = _running(session)
    result = service.post_message(session.id, author=customer, content="x", mode="steer")
    assert result.mode == "queue" and result.message.steer_run_id is None
    assert AgentRun.objects.filter(trigger=result.message, status=RunStatus.PENDING).exists()


def test_interrupt_keeps_the_partial_text_marked_and_starts_a_new_run(settings):
    runtime_settings(settings)
    session, _ = anonymous_session()
    run, customer = _running(session)
    result = service.post_message(session.id, author=customer, content="stop", mode="interrupt")
    assert result.mode == "interrupt"
    reply = Message.objects.get(role="assistant")
    assert (reply.state, reply.content) == (MessageState.CANCELLED, "half an ans")
    cancelled = Event.objects.get(type="message.cancelled")
    assert cancelled.payload["reason"] == "interrupted" and cancelled.seq < result.seq
    assert AgentRun.objects.get(pk=run.pk).status == RunStatus.CANCELLED
    assert AgentRun.objects.filter(trigger=result.message, status=RunStatus.PENDING).exists()


def test_a_steering_message_the_run_never_read_gets_a_run_of_its_own(settings):
    runtime_settings(settings)
    session, _ = anonymous_session()
    run, customer = _running(session)
    result = service.post_message(session.id, author=customer, content="late", mode="steer")
    runs.finish(run.pk, "w", RunStatus.COMPLETED)
    assert steering.requeue_unread(run.pk)
    assert AgentRun.objects.filter(trigger=result.message, status=RunStatus.PENDING).exists()


def test_modes_are_the_customers_only_and_bad_ones_change_nothing(settings):
    runtime_settings(settings)
    session, _ = anonymous_session()
    _, customer = _running(session)
    olga = make_user("olga", operator=True)
    operator = service.join_operator(session.id, olga)
    before = DurableSession.objects.get(pk=session.pk).last_seq
    with pytest.raises(InvalidInput) as refused:
        service.post_message(session.id, author=operator, content="hi", mode="steer")
    assert refused.value.field == "mode"
    for bad in ("STEER", "", 1, ["steer"]):
        with pytest.raises(InvalidInput):
            service.post_message(session.id, author=customer, content="hi", mode=bad)
    assert DurableSession.objects.get(pk=session.pk).last_seq == before


ANY_MODE = st.one_of(
    st.text(max_size=12), st.integers(), st.booleans(), st.none(), st.lists(st.text())
)


@settings(max_examples=examples(60), deadline=None)
@given(ANY_MODE)
def test_any_mode_in_a_frame_is_checked_before_anything(mode):
    frame = {"type": "message.send", "content": "hi", "client_id": "c", "mode": mode}
    text = json.dumps(frame)
    if mode is None:
        with pytest.raises(FrameError):  # null is not a string
            parse(text)
    elif mode in ("queue", "steer", "interrupt"):
        assert parse(text).fields["mode"] == mode
    else:
        with pytest.raises(FrameError) as refused:
            parse(text)
        assert refused.value.field == "mode"


def test_the_openai_agent_puts_steering_after_the_reply_so_far():
    agent = OpenAICompatibleAgent(model="m")
    turn = Turn(
        "s",
        [HistoryMessage("user", "write a poem", "Ann")],
        reply=(Part("text", "Roses are red,"),),
        step=1,
        steered=(HistoryMessage("user", "make it about cats", "Ann"),),
    )
    messages = agent.request_body(turn)["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[-1]["content"] == "make it about cats"


def _demo(settings, reply: str = SENTENCES) -> None:
    runtime_settings(
        settings,
        AGENT_OPTIONS={"thinking_seconds": 0, "tokens_per_second": 150, "reply": reply, "seed": 3},
    )


async def _send(comm, content: str, client_id: str, mode: str | None = None) -> dict:
    frame: dict[str, Any] = {"type": "message.send", "content": content, "client_id": client_id}
    if mode is not None:
        frame["mode"] = mode
    await comm.send_json_to(frame)
    got = await frames_until(comm, lambda f: f.get("type") == "ack" and f["client_id"] == client_id)
    return got[-1]


async def _wait_runs(predicate, limit: float = 15) -> list[AgentRun]:
    for _ in range(int(limit / 0.05)):
        found = [r async for r in AgentRun.objects.order_by("id")]
        if predicate(found):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("the runs never got there")


async def test_a_steering_message_changes_the_rest_of_the_same_answer(settings):
    _demo(settings)
    async with running_worker("w"):
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await _send(comm, "tell me the plan", "c1")
        await frames_until(comm, lambda f: f.get("type") == "message.delta")
        ack = await _send(comm, "Actually, what about a refund?", "c2", mode="steer")
        assert ack["mode"] == "steer"
        frames = await frames_until(comm, is_end)
        assert frames[-1]["type"] == "message.completed"
        steered = next(f for f in frames if f.get("type") == "run.steered")
        done = await _wait_runs(lambda rs: rs and rs[-1].status == RunStatus.COMPLETED)
        assert len(done) == 1  # the same run, no second one
        reply = await Message.objects.aget(role="assistant")
        assert steered["data"]["reply_id"] == reply.pk
        assert steered["data"]["message_ids"] == [(await Message.objects.aget(client_id="c2")).pk]
        said = ' Change of plan, you said: "Actually, what about a refund?". '
        assert reply.content.endswith(". " + said[1:] + REPLIES["refund"])
        assert "Sentence 100 of the plan." not in reply.content  # the plan was dropped
        assert reply.content.startswith("Sentence 1 of the plan.")  # what it wrote stays
        # The text before the steering is a part of its own, ended before the event.
        parts = [p async for p in reply.parts.order_by("index")]
        assert len(parts) == 2 and parts[1].text == said + REPLIES["refund"]
        await comm.disconnect()


async def test_interrupt_stops_the_answer_and_a_new_run_answers(settings):
    _demo(settings)
    async with running_worker("w"):
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await _send(comm, "tell me the plan", "c1")
        await frames_until(comm, lambda f: f.get("type") == "message.delta")
        ack = await _send(comm, "Stop, never mind", "c2", mode="interrupt")
        assert ack["mode"] == "interrupt"
        frames = await frames_until(comm, lambda f: f.get("type") == "message.cancelled")
        assert frames[-1]["data"]["reason"] == "interrupted"
        frames = await frames_until(comm, is_end)
        assert frames[-1]["type"] == "message.completed"
        done = await _wait_runs(
            lambda rs: len(rs) == 2 and rs[-1].status == RunStatus.COMPLETED, limit=30
        )
        assert done[0].status == RunStatus.CANCELLED
        first, second = [m async for m in Message.objects.filter(role="assistant").order_by("seq")]
        assert first.state == MessageState.CANCELLED and 0 < len(first.content) < len(SENTENCES)
        assert second.state == MessageState.COMPLETE and second.content == SENTENCES
        assert second.seq > (await Message.objects.aget(client_id="c2")).seq
        await comm.disconnect()


class PatientAgent(Agent):
    """Writes a sentence, then waits (without asking for steering) until a steering message
    was sent; at the next step it goes on with what it was told."""

    supports_steering = True

    async def stream(self, turn: Turn):
        if turn.step == 0:
            yield "First part."
            steered = Message.objects.filter(send_mode="steer")
            for _ in range(500):  # bounded: the test fails rather than hangs
                if await db(steered.exists)():
                    return
                await asyncio.sleep(0.02)
            return
        yield " Then, as asked: " + turn.steered[-1].content


async def test_steering_after_the_last_boundary_gets_a_step_of_its_own(settings):
    runtime_settings(settings, AGENT="tests.test_steering.PatientAgent")
    async with running_worker("w"):
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await _send(comm, "hello", "c1")
        await frames_until(comm, lambda f: f.get("type") == "message.delta")
        ack = await _send(comm, "be brief", "c2", mode="steer")
        assert ack["mode"] == "steer"
        frames = await frames_until(comm, is_end)
        assert frames[-1]["type"] == "message.completed"
        assert [f["type"] for f in frames].count("run.steered") == 1
        reply = await Message.objects.aget(role="assistant")
        assert reply.content == "First part. Then, as asked: be brief"
        steps = [p.step async for p in reply.parts.order_by("index")]
        assert steps == [0, 1]
        runs_ = await _wait_runs(lambda rs: rs and rs[-1].status == RunStatus.COMPLETED)
        assert len(runs_) == 1
        await comm.disconnect()


def test_the_rest_api_posts_with_a_mode_and_says_which_applied(settings):
    from django.test import Client

    from tests.test_api import as_visitor, error, url

    runtime_settings(settings)
    session, _ = anonymous_session("v-rest")
    run, _ = _running(session)
    client = as_visitor(Client(), "v-rest")
    steered = client.post(
        url("session-messages", session),
        {"content": "shorter", "client_id": "r1", "mode": "steer"},
        content_type="application/json",
    )
    assert steered.status_code == 201
    body = steered.json()
    assert body["mode"] == "steer" and body["message"]["mode"] == "steer"
    assert Message.objects.get(client_id="r1").steer_run_id == run.pk
    before = DurableSession.objects.get(pk=session.pk).last_seq
    for bad in ("STEER", 3, True, ["steer"]):
        refused = client.post(
            url("session-messages", session),
            {"content": "x", "client_id": f"bad-{bad!r}", "mode": bad},
            content_type="application/json",
        )
        assert refused.status_code == 400
        assert (error(refused)["code"], error(refused)["field"]) == ("invalid_field", "mode")
    assert DurableSession.objects.get(pk=session.pk).last_seq == before

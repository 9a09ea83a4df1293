"""Typed turns in process: reasoning, tool calls and their outcomes as parts of the reply,
approvals that suspend the run and are answered from any device, and the agent's status."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import close_old_connections

from durable_sessions import service
from durable_sessions.agents import (
    Agent,
    Data,
    Reasoning,
    Source,
    ToolCall,
    ToolContext,
    Turn,
    tool,
)
from durable_sessions.errors import AlreadyAnswered, NotAllowed
from durable_sessions.models import (
    AgentRun,
    Event,
    Message,
    MessagePart,
    ParticipantKind,
    RunStatus,
)
from tests.factories import anonymous_session, make_user, open_ws
from tests.test_runtime import frames_until, is_end, running_worker, runtime_settings, send

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async
DEMO = {"thinking_seconds": 0, "tokens_per_second": 0, "seed": 1}


def demo_settings(settings, **overrides):
    runtime_settings(settings, AGENT_OPTIONS=DEMO, **overrides)


def log_types(frames: list[dict]) -> list[str]:
    return [f["type"] for f in frames if "seq" in f and "at" in f]


def statuses(frames: list[dict]) -> list[tuple[str, str | None]]:
    return [(f["status"], f.get("tool")) for f in frames if f.get("type") == "agent.status"]


# Database reads go through database_sync_to_async, which closes its connection: one left
# open by the async ORM would keep pytest-django from dropping a PostgreSQL test database.


@db
def reply_parts() -> list[MessagePart]:
    reply = Message.objects.filter(role="assistant").last()
    return list(MessagePart.objects.filter(message=reply).order_by("index"))


@db
def latest_reply() -> Message:
    return Message.objects.filter(role="assistant").last()


@db
def count(model: Any, **filters: Any) -> int:
    return model.objects.filter(**filters).count()


@db
def part_by_pk(pk: int) -> MessagePart:
    return MessagePart.objects.get(pk=pk)


@db
def latest_run() -> AgentRun:
    return AgentRun.objects.order_by("-id").first()


async def wait_for(predicate, limit: float = 10) -> None:
    for _ in range(int(limit / 0.05)):
        if await db(predicate)():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("never true")


def run_status() -> str:
    return AgentRun.objects.order_by("-id").values_list("status", flat=True).first()


async def test_reasoning_a_tool_call_and_the_answer_stream_as_parts(settings):
    demo_settings(settings)
    async with running_worker("w"):
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await send(comm, "Where is my order 1001?", "c1")
        frames = await frames_until(comm, is_end)
        assert frames[-1]["type"] == "message.completed"
        types = log_types(frames)
        assert types[:2] == ["message.created", "message.created"]  # the question, the reply
        assert types.index("part.started") < types.index("part.delta") < types.index("part.ended")
        assert types.count("tool.updated") == 2  # running, then done
        started = [f["data"]["part"] for f in frames if f["type"] == "part.started"]
        assert [p["type"] for p in started] == ["reasoning", "tool_call", "text"]
        tool_states = [f["data"]["state"] for f in frames if f["type"] == "tool.updated"]
        assert tool_states == ["running", "done"]
        done = next(
            f["data"] for f in frames if f["type"] == "tool.updated" and f["data"]["output"]
        )
        assert done["output"]["status"] == "shipped" and done["input"] == {"order_id": "1001"}
        # The tool's input streamed as text deltas of its own part.
        tool_id = started[1]["id"]
        streamed = "".join(
            f["data"]["text"]
            for f in frames
            if f["type"] == "part.delta" and f["data"]["part_id"] == tool_id
        )
        assert streamed == '{"order_id": "1001"}'
        text_deltas = [f["data"] for f in frames if f["type"] == "message.delta"]
        assert {d["part_id"] for d in text_deltas} == {started[2]["id"]}
        assert ("calling_tool", "order_status") in statuses(frames)
        assert statuses(frames)[-1][0] in ("streaming", "idle")
        parts = await reply_parts()
        assert [(p.type, p.state) for p in parts] == [
            ("reasoning", "done"),
            ("tool_call", "done"),
            ("text", "done"),
        ]
        reply = await latest_reply()
        assert reply.content == parts[2].text and "shipped" in reply.content
        seqs = list(
            await db(lambda: list(Event.objects.order_by("seq").values_list("seq", flat=True)))()
        )
        assert seqs == list(range(1, len(seqs) + 1))
        await comm.disconnect()


async def test_a_new_connection_replays_parts_exactly_from_mid_part(settings):
    demo_settings(settings)
    async with running_worker("w"):
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await send(comm, "Where is my order 1002?", "c1")
        await frames_until(comm, is_end)
        await comm.disconnect()
    events = await db(lambda: list(Event.objects.order_by("seq").values("seq", "type")))()
    middle = next(e["seq"] for e in events if e["type"] == "part.delta")
    again, frames = await open_ws(session.id, store=store, after_seq=middle)
    replayed = [f["seq"] for f in frames if "at" in f]
    assert replayed == [e["seq"] for e in events if e["seq"] > middle]
    await again.disconnect()


async def test_an_approval_suspends_the_run_and_a_second_device_answers_it(settings):
    demo_settings(settings)
    async with running_worker("w") as worker:
        session, store = await db(anonymous_session)()
        laptop, _ = await open_ws(session.id, store=store)
        await send(laptop, "Please refund order 1001", "c1")
        frames = await frames_until(
            laptop, lambda f: f.get("type") == "agent.status" and f["status"] == "awaiting_approval"
        )
        assert frames[-1]["tool"] == "refund_order"
        waiting = [f["data"] for f in frames if f["type"] == "tool.updated"][-1]
        assert waiting["state"] == "awaiting-approval" and waiting["approval"]["pending"]
        await wait_for(lambda: run_status() == RunStatus.AWAITING)
        # No worker holds the suspended run: its task ends just after the status write.
        await wait_for(lambda: not worker.tasks)
        # A new device sees the pending approval at once, and the agent waiting.
        phone, opened = await open_ws(session.id, store=store)
        snapshot = opened[0]
        assert snapshot["agent"]["status"] == "awaiting_approval"
        (pending,) = snapshot["approvals"]
        approval_id = pending["part"]["approval"]["id"]
        assert pending["part"]["tool_name"] == "refund_order"
        answer = {
            "type": "approval.answer",
            "approval_id": approval_id,
            "approved": True,
            "client_id": "a1",
        }
        await phone.send_json_to(answer)
        ack = await frames_until(phone, lambda f: f.get("type") == "ack")
        assert ack[-1]["decision"] == "approved" and ack[-1]["duplicate"] is False
        await phone.send_json_to(answer)  # a retry: the same answer, nothing new
        ack = await frames_until(phone, lambda f: f.get("type") == "ack")
        assert ack[-1]["duplicate"] is True
        await phone.send_json_to({**answer, "approved": False, "client_id": "a2"})
        error = await frames_until(phone, lambda f: f.get("type") == "error")
        assert error[-1]["code"] == "already_answered"
        # The run goes on as the same reply and answers.
        rest = await frames_until(laptop, is_end)
        assert rest[-1]["type"] == "message.completed"
        assert await count(Message, role="assistant") == 1
        parts = await reply_parts()
        assert [(p.type, p.state) for p in parts] == [
            ("reasoning", "done"),
            ("tool_call", "done"),
            ("text", "done"),
        ]
        assert parts[1].output["refunded"] == 89.9 and parts[1].decision == "approved"
        assert "refunded" in parts[2].text
        # The run is marked finished just after its reply completes (its own write).
        await wait_for(lambda: run_status() == RunStatus.COMPLETED)
        for comm in (laptop, phone):
            await comm.disconnect()


async def test_a_denial_is_the_tools_result(settings):
    demo_settings(settings)
    async with running_worker("w"):
        session, _store = await db(anonymous_session)()
        await db(service.post_customer_message)(session.id, "refund order 1002")
        await wait_for(lambda: run_status() == RunStatus.AWAITING)
        part = (await reply_parts())[1]
        await db(service.answer_approval)(
            session.id, part.wire_id, approved=False, reason="changed my mind"
        )
        await wait_for(lambda: run_status() == RunStatus.COMPLETED)
        parts = await reply_parts()
        assert parts[1].state == "denied" and parts[1].output is None
        assert "did not" in parts[2].text


async def test_a_takeover_while_waiting_cancels_the_call(settings):
    demo_settings(settings)
    operator = await db(make_user)("op", operator=True)
    async with running_worker("w"):
        session, _store = await db(anonymous_session)()
        await db(service.post_customer_message)(session.id, "refund order 1001")
        await wait_for(lambda: run_status() == RunStatus.AWAITING)
        part = (await reply_parts())[1]
        await db(service.take_over)(session.id, operator)
        assert await db(run_status)() == RunStatus.CANCELLED
        part = await part_by_pk(part.pk)
        assert part.state == "cancelled" and part.decision == "cancelled"
        reply = await latest_reply()
        assert reply.state == "cancelled"
        with pytest.raises(AlreadyAnswered):
            await db(service.answer_approval)(session.id, part.wire_id, approved=True)
        assert await count(MessagePart, state="running") == 0


async def test_an_expired_approval_is_denied_and_the_agent_told(settings):
    runtime_settings(settings, AGENT_OPTIONS=DEMO, APPROVAL_TIMEOUT=0.3)
    async with running_worker("w"):
        session, _store = await db(anonymous_session)()
        await db(service.post_customer_message)(session.id, "refund order 1001")
        await wait_for(lambda: run_status() == RunStatus.COMPLETED)
        parts = await reply_parts()
        assert (parts[1].state, parts[1].decision) == ("denied", "expired")
        assert "expired" in parts[2].text


async def test_refunds_over_the_limit_are_for_an_operator(settings):
    demo_settings(settings)
    operator = await db(make_user)("op", operator=True)
    async with running_worker("w"):
        session, _store = await db(anonymous_session)()
        await db(service.post_customer_message)(session.id, "refund order 1003")
        await wait_for(lambda: run_status() == RunStatus.AWAITING)
        part = (await reply_parts())[1]
        assert part.approvers == "operator"
        with pytest.raises(NotAllowed):
            await db(service.answer_approval)(session.id, part.wire_id, approved=True)
        assert (await part_by_pk(part.pk)).state == "awaiting-approval"
        result = await db(service.answer_approval)(
            session.id, part.wire_id, approved=True, operator=operator
        )
        assert result.part.decided_by.kind == ParticipantKind.OPERATOR
        await wait_for(lambda: run_status() == RunStatus.COMPLETED)
        assert (await reply_parts())[1].state == "done"


# --- a scripted agent: sync and async tools, failures, limits ---------------------------

CALLS: list[str] = []


@tool(input_schema={"type": "object", "properties": {"n": {"type": "integer"}}})
def double(n: int) -> int:
    """Twice n."""
    CALLS.append("double")
    return 2 * n


@tool
async def broken() -> None:
    """Always fails."""
    CALLS.append("broken")
    raise RuntimeError("the backend is down")


@tool(timeout=0.2)
async def slow() -> str:
    CALLS.append("slow")
    await asyncio.sleep(30)
    return "never"


@tool
def whoami(context: ToolContext) -> dict[str, Any]:
    """The session and call it runs for."""
    return {"session": context.session_id, "call": context.tool_call_id}


class ScriptedAgent(Agent):
    """Step 0 calls the tools named in the customer's message; later steps report."""

    tools = [double, broken, slow, whoami]

    async def stream(self, turn: Turn) -> AsyncIterator[Any]:
        if turn.step == 0:
            yield Reasoning("planning")
            for name in turn.last_user_message.split():
                yield ToolCall(name, {"n": 21} if name == "double" else {})
            return
        if "loop" in turn.last_user_message:
            yield ToolCall("double", {"n": turn.step})
            return
        yield Data("summary", {"steps": turn.step})
        yield Source("https://example.com/doc", "Doc")
        for result in turn.tool_results:
            yield f"{result.tool_name}={result.state}:{result.output or result.error}\n"


def scripted(settings, **overrides):
    CALLS.clear()
    options = {"AGENT": "tests.test_turns.ScriptedAgent", "AGENT_OPTIONS": {}, **overrides}
    runtime_settings(settings, **options)


async def run_to_end(text: str) -> list[MessagePart]:
    session, _ = await db(anonymous_session)()
    await db(service.post_customer_message)(session.id, text)
    await wait_for(lambda: run_status() in (RunStatus.COMPLETED, RunStatus.FAILED))
    return await reply_parts()


async def test_tool_failures_become_error_parts_and_the_run_goes_on(settings):
    scripted(settings)
    async with running_worker("w"):
        parts = await run_to_end("double broken slow nosuch")
    calls = {p.tool_name: p for p in parts if p.type == "tool_call"}
    assert calls["double"].state == "done" and calls["double"].output == 42
    assert calls["broken"].state == "error" and "backend is down" in calls["broken"].error
    assert calls["slow"].state == "error" and "0.2 s" in calls["slow"].error
    assert calls["nosuch"].state == "error" and "unknown tool" in calls["nosuch"].error
    assert CALLS == ["double", "broken", "slow"]  # each called once
    kinds = [p.type for p in parts]
    assert kinds[-3:] == ["data", "source", "text"]
    assert parts[-3].data == {"name": "summary", "data": {"steps": 1}}
    assert "double=done:42" in parts[-1].text and await db(run_status)() == RunStatus.COMPLETED


class BadInputAgent(ScriptedAgent):
    async def stream(self, turn: Turn) -> AsyncIterator[Any]:
        if turn.step == 0:
            yield ToolCall("double", {"n": "twenty"})
        else:
            yield turn.tool_results[0].error


async def test_an_input_that_breaks_the_schema_is_an_error_not_a_call(settings):
    scripted(settings, AGENT="tests.test_turns.BadInputAgent")
    async with running_worker("w"):
        parts = await run_to_end("go")
    assert parts[0].state == "error" and "invalid input" in parts[0].error
    assert CALLS == []


async def test_the_step_limit_ends_the_reply(settings):
    scripted(settings, MAX_AGENT_STEPS=3)
    async with running_worker("w"):
        parts = await run_to_end("double loop")
    assert [p.step for p in parts if p.type == "tool_call"] == [0, 0, 1, 2]  # "loop" is unknown
    reply = await latest_reply()
    assert reply.state == "complete"


def test_two_concurrent_answers_produce_exactly_one_decision(postgres, settings):
    runtime_settings(settings)
    session, _ = anonymous_session()
    reply = service.start_assistant_message(session.id)
    from durable_sessions.service import parts

    call = parts.start_part(reply.pk, "tool_call", tool_name="refund_order")
    parts.tool_input_ready(call.pk, {"order_id": "1001"}, approvers="any")
    operator = make_user("op", operator=True)
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def answer(i: int) -> None:
        try:
            barrier.wait()
            result = service.answer_approval(
                session.id,
                call.wire_id,
                approved=i % 2 == 0,
                operator=operator if i % 3 == 0 else None,
                client_id=f"answer-{i}",
            )
            outcomes.append(result.part.decision)
        except AlreadyAnswered:
            outcomes.append("refused")
        finally:
            close_old_connections()

    threads = [threading.Thread(target=answer, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes).count("refused") == 5
    decided = MessagePart.objects.get(pk=call.pk)
    assert decided.decision in ("approved", "denied")
    assert Event.objects.filter(session=session, type="tool.updated").count() == 2


async def test_a_lost_status_frame_is_corrected_by_the_next_log_event(settings):
    demo_settings(settings)
    async with running_worker("w"):
        session, store = await db(anonymous_session)()
        comm, _ = await open_ws(session.id, store=store)
        await send(comm, "hello", "c1")
        frames = await frames_until(comm, is_end)
        later = await frames_until(
            comm, lambda f: f.get("type") == "agent.status" and f["status"] == "idle"
        )
        assert (frames + later)[-1]["status"] == "idle"
        await comm.disconnect()


async def test_another_worker_continues_an_approved_run(settings):
    demo_settings(settings)
    session, _store = await db(anonymous_session)()
    async with running_worker("first"):
        await db(service.post_customer_message)(session.id, "refund order 1001")
        await wait_for(lambda: run_status() == RunStatus.AWAITING)
    part = (await reply_parts())[1]
    await service.aanswer_approval(session.id, part.wire_id, approved=True)
    async with running_worker("second"):
        await wait_for(lambda: run_status() == RunStatus.COMPLETED)
    run = await latest_run()
    assert run.worker == "second"
    parts = await reply_parts()
    assert [p.state for p in parts] == ["done", "done", "done"]


async def test_a_message_while_a_call_waits_is_answered_after_the_run_ends(settings):
    demo_settings(settings)
    async with running_worker("w"):
        session, _ = await db(anonymous_session)()
        await db(service.post_customer_message)(session.id, "refund order 1001")
        await wait_for(lambda: run_status() == RunStatus.AWAITING)
        await db(service.post_customer_message)(session.id, "and where is order 1002?")
        await asyncio.sleep(0.5)  # sweeps try it: it waits behind the suspended run
        statuses = await db(lambda: list(AgentRun.objects.values_list("status", flat=True)))()
        assert sorted(statuses) == [RunStatus.AWAITING, RunStatus.PENDING]
        state = await db(service.runs.agent_state)(session.id)
        assert state["status"] == "awaiting_approval" and state["tool"] == "refund_order"
        part = (await reply_parts())[1]
        await service.aanswer_approval(session.id, part.wire_id, approved=True)
        await wait_for(
            lambda: set(AgentRun.objects.values_list("status", flat=True)) == {RunStatus.COMPLETED}
        )
    replies = await db(lambda: list(Message.objects.filter(role="assistant").order_by("seq")))()
    assert len(replies) == 2
    assert "refunded" in replies[0].content and "delivered" in replies[1].content


async def test_a_tool_with_a_context_parameter_gets_its_session_and_call(settings):
    scripted(settings)
    async with running_worker("w"):
        parts = await run_to_end("whoami")
    call = parts[1]
    assert call.state == "done" and call.output["call"] == call.tool_call_id
    session_id = await db(lambda: str(Message.objects.get(pk=call.message_id).session_id))()
    assert call.output["session"] == session_id

"""The OpenAI-compatible agent against a local fake server: stream, drop, stall, error."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from durable_sessions.agents import AgentError, HistoryMessage, Turn
from durable_sessions.agents.openai_compatible import OpenAICompatibleAgent
from durable_sessions.models import AgentRun, Message, MessageState, RunStatus
from tests.factories import anonymous_session, open_ws
from tests.fake_openai import FakeChatServer
from tests.test_runtime import (
    frames_until,
    is_end,
    running_worker,
    runtime_settings,
    send,
    wait_for_run,
)

TOKENS = ["Hello", ", I", " can", " help", " with", " that", "."]
TURN = Turn(
    "s1",
    [
        HistoryMessage("user", "Where is my order?", "Visitor"),
        HistoryMessage("operator", "Checking now", "Olga"),
        HistoryMessage("user", "Thanks", "Visitor"),
    ],
)


def agent_for(server: FakeChatServer, **options) -> OpenAICompatibleAgent:
    return OpenAICompatibleAgent(
        base_url=server.base_url, model="test-model", api_key="sk-test", **options
    )


async def collect(agent, turn=TURN) -> list[str]:
    return [chunk async for chunk in agent.stream(turn)]


async def test_streams_every_token_and_sends_the_history():
    async with FakeChatServer(TOKENS) as server:
        assert await collect(agent_for(server)) == TOKENS
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-test"
    body = request["body"]
    assert body["model"] == "test-model" and body["stream"] is True
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert "Olga, a human colleague" in body["messages"][2]["content"]


async def test_a_stream_that_dies_midway_is_an_error_after_the_partial_text():
    got: list[str] = []
    async with FakeChatServer(TOKENS, mode="die", cut_after=3) as server:
        with pytest.raises(AgentError, match="ended before"):
            async for chunk in agent_for(server).stream(TURN):
                got.append(chunk)
    assert got == TOKENS[:3]


async def test_a_stalled_stream_fails_after_the_stall_timeout():
    async with FakeChatServer(TOKENS, mode="stall", cut_after=2) as server:
        with pytest.raises(AgentError, match="stalled"):
            await collect(agent_for(server, stall_timeout=0.5))


async def test_an_http_error_names_the_status():
    async with FakeChatServer(TOKENS, mode="error") as server:
        with pytest.raises(AgentError, match="HTTP 500"):
            await collect(agent_for(server))


async def test_an_unreachable_server_is_an_agent_error():
    agent = OpenAICompatibleAgent(base_url="http://127.0.0.1:9/v1", model="m", connect_timeout=1)
    with pytest.raises(AgentError, match="cannot reach"):
        await collect(agent)


async def test_no_model_configured_is_an_agent_error(monkeypatch):
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    with pytest.raises(AgentError, match="no model"):
        await collect(OpenAICompatibleAgent(base_url="http://127.0.0.1:9/v1"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("mode", "state"), [("ok", "complete"), ("die", "failed")])
async def test_through_the_runtime_a_dropped_stream_fails_the_reply(settings, mode, state):
    async with FakeChatServer(TOKENS, mode=mode, cut_after=4) as server:
        runtime_settings(
            settings,
            AGENT="durable_sessions.agents.openai_compatible.OpenAICompatibleAgent",
            AGENT_OPTIONS={"base_url": server.base_url, "model": "m", "api_key": "k"},
        )
        async with running_worker("w"):
            session, store = await database_sync_to_async(anonymous_session)()
            comm, _ = await open_ws(session.id, store=store)
            await send(comm, "hello", "c1")
            frames = await frames_until(comm, is_end)
            run = await wait_for_run(RunStatus.COMPLETED if mode == "ok" else RunStatus.FAILED)
            reply = await Message.objects.aget(pk=run.message_id)
            assert reply.state == state
            expected = "".join(TOKENS if mode == "ok" else TOKENS[:4])
            assert reply.content == expected
            if mode == "die":
                assert frames[-1]["type"] == "message.failed"
                assert "ended before" in frames[-1]["data"]["error"]
                assert (await AgentRun.objects.aget(pk=run.pk)).error
            else:
                assert reply.state == MessageState.COMPLETE
            await comm.disconnect()


CALLS = [("call_a", "order_status", '{"order_id": "1001"}')]


async def test_tool_calls_stream_their_input_and_results_go_back_as_tool_messages():
    from durable_sessions.agents import Part, Reasoning, ToolCall, ToolInputDelta
    from durable_sessions.agents.demo import order_status

    async with FakeChatServer(
        TOKENS, mode="tools", tool_calls=CALLS, reasoning=["Look it ", "up."]
    ) as server:
        agent = agent_for(server, tools=["durable_sessions.agents.demo.order_status"])
        first = await collect(agent)
        assert [i.text for i in first if isinstance(i, Reasoning)] == ["Look it ", "up."]
        chunks = [i for i in first if isinstance(i, ToolInputDelta)]
        assert "".join(c.text for c in chunks) == CALLS[0][2]
        assert first[-1] == ToolCall("order_status", {"order_id": "1001"}, "call_a")
        done = Part(
            "tool_call",
            state="done",
            tool_name="order_status",
            tool_call_id="call_a",
            input={"order_id": "1001"},
            output={"status": "shipped"},
        )
        second = await collect(agent, Turn("s1", TURN.history, reply=(done,), step=1))
        assert second == TOKENS
    body = server.requests[0]["body"]
    assert body["tools"] == [order_status.spec()]
    messages = server.requests[1]["body"]["messages"]
    assert messages[-2]["tool_calls"][0]["function"]["name"] == "order_status"
    assert messages[-1] == {
        "role": "tool",
        "tool_call_id": "call_a",
        "content": '{"status": "shipped"}',
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("mode", "state"), [("tools", "complete"), ("tool_error", "failed")])
async def test_through_the_runtime_a_tool_call_and_its_answer(settings, mode, state):
    bad = [("call_b", "order_status", '{"order_id": 12')]  # cut JSON: a tool error, no crash
    async with FakeChatServer(
        TOKENS, mode=mode, tool_calls=CALLS + bad, reasoning=["Checking."]
    ) as server:
        runtime_settings(
            settings,
            AGENT="durable_sessions.agents.openai_compatible.OpenAICompatibleAgent",
            AGENT_OPTIONS={
                "base_url": server.base_url,
                "model": "m",
                "tools": ["durable_sessions.agents.demo.order_status"],
            },
        )
        async with running_worker("w"):
            session, store = await database_sync_to_async(anonymous_session)()
            comm, _ = await open_ws(session.id, store=store)
            await send(comm, "where is 1001?", "c1")
            frames = await frames_until(comm, is_end)
            await comm.disconnect()
    from tests.test_turns import latest_reply, reply_parts

    reply = await latest_reply()
    assert reply.state == state
    parts = await reply_parts()
    kinds = [(p.type, p.state) for p in parts]
    assert kinds[:3] == [("reasoning", "done"), ("tool_call", "done"), ("tool_call", "error")]
    assert parts[1].output["status"] == "shipped" and "invalid input" in parts[2].error
    if mode == "tools":
        assert parts[3].text == "".join(TOKENS)
        tool_messages = [m for m in server.requests[1]["body"]["messages"] if m["role"] == "tool"]
        assert [m["tool_call_id"] for m in tool_messages] == ["call_a", "call_b"]
    else:
        assert frames[-1]["type"] == "message.failed" and "HTTP 500" in frames[-1]["data"]["error"]

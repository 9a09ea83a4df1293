"""DurableChatTransport under the real AI SDK (ai 5.0.0, 6.0.326 and 7.0.173) in Node,
against a real Daphne process whose embedded runner streams the demo agent's answers.

``tests/aisdk_ws/run.mjs`` drives the package's ``AbstractChat`` (in-memory state) through
the transport, one scenario per durable session, and prints what the Chat ended with; this
test compares it with what the server stored. No timing is asserted: the scripts wait on
conditions (some text streamed, the chat ready again).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async

from durable_sessions import service
from durable_sessions.models import Event, Message
from tests import services
from tests.factories import make_user
from tests.live import ROOT, DaphneServer, server_env
from tests.test_browser_chat import logged_in_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.timeout(240)]

db = database_sync_to_async
RUN = ROOT / "tests" / "aisdk_ws" / "run.mjs"
TANSTACK = ROOT / "tests" / "aisdk_ws" / "tanstack.mjs"
SCENARIOS = ("stream", "stop", "drop", "reload", "approval", "edit", "together")
TANSTACK_SCENARIOS = ("stream", "stop", "drop", "reload", "approval")
# The demo agent: its generic answer twice, about 30 words a second; "refund order 1001"
# calls a tool that a person approves first.
AGENT = {"thinking_seconds": 0.2, "tokens_per_second": 30, "seed": 7, "repeat": 2}


def agent_server(daphne: Any) -> DaphneServer:
    return daphne(server_env(ds_settings={"RUNNER": "embedded", "AGENT_OPTIONS": AGENT}))


def owner_with_sessions(count: int) -> tuple[str, list[str]]:
    owner = make_user("chat-owner")
    sessions = [str(service.create_session(owner=owner, title="ai sdk").pk) for _ in range(count)]
    return logged_in_cookie(owner), sessions


def replies(session_id: str) -> list[Message]:
    return list(Message.objects.filter(session_id=session_id, role="assistant").order_by("seq"))


def cancel_reasons(session_id: str) -> list[str]:
    events = Event.objects.filter(session_id=session_id, type="message.cancelled")
    return [event.payload["reason"] for event in events]


def all_messages(session_id: str) -> list[Message]:
    return list(Message.objects.filter(session_id=session_id).order_by("seq"))


def answered(session_id: str) -> dict[int, str]:
    """Each customer's message id -> the text of the reply whose run answered it, as the
    replies' ``message.created`` events link them."""
    texts = {m.pk: m.content for m in replies(session_id)}
    links: dict[int, str] = {}
    for event in Event.objects.filter(session_id=session_id, type="message.created"):
        message = event.payload["message"]
        for asked in message.get("answers", ()):
            links[asked] = texts[message["id"]]
    return links


def user_messages(session_id: str) -> list[Message]:
    return list(Message.objects.filter(session_id=session_id, role="user").order_by("seq"))


async def run_scenarios(
    server: DaphneServer, version: int, script: Path = RUN, names: tuple[str, ...] = SCENARIOS
) -> dict[str, dict[str, Any]]:
    node = services.require_node_packages()
    cookie, sessions = await db(owner_with_sessions)(len(names))
    config = {
        "version": version,
        "ws": server.ws,
        "origin": server.http,
        "cookie": cookie,
        "scenarios": list(zip(names, sessions, strict=True)),
    }
    process = await asyncio.create_subprocess_exec(
        node,
        str(script),
        json.dumps(config),
        cwd=ROOT / "tests",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(200):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()[-3000:]
    results = [json.loads(line) for line in out.decode().splitlines()]
    return {result["scenario"]: result for result in results}


async def check_version(server: DaphneServer, version: int) -> None:
    results = await run_scenarios(server, version)
    assert set(results) == set(SCENARIOS)
    for result in results.values():
        assert result["badChunks"] == [], result["scenario"]

    # Streams: one user message (the SDK's id is its client id), one complete answer.
    stream = results["stream"]
    stored = await db(replies)(stream["sessionId"])
    asked = await db(user_messages)(stream["sessionId"])
    assert stream["status"] == "ready" and stream["error"] is None
    assert stream["roles"] == ["user", "assistant"]
    assert [m.state for m in stored] == ["complete"]
    assert stream["text"] == stored[0].content and stored[0].content
    assert [m.client_id for m in asked] == [stream["ids"][0]]
    assert stream["ids"][1] == f"ds-{stored[0].pk}"
    assert all(part["state"] == "done" for part in stream["parts"] if part["type"] == "text")

    # Stop is a real cancel: the reply ends cancelled by the customer, its text kept.
    stop = results["stop"]
    stored = await db(replies)(stop["sessionId"])
    assert [m.state for m in stored] == ["cancelled"]
    assert await db(cancel_reasons)(stop["sessionId"]) == ["user"]
    assert stop["status"] == "ready"
    assert stored[0].content.startswith(stop["text"]) and stop["text"]

    # A dropped websocket: the answer goes on, identical to an uninterrupted one.
    drop = results["drop"]
    stored = await db(replies)(drop["sessionId"])
    assert drop["sockets"] >= 2
    assert drop["roles"] == ["user", "assistant"]
    assert drop["text"] == stored[0].content == stream["text"]

    # A reload: a fresh Chat resumes the answer from its start, once; a finished chat
    # has nothing to resume.
    reload = results["reload"]
    stored = await db(replies)(reload["sessionId"])
    assert reload["loaded"] == ["user"]
    assert reload["roles"] == ["user", "assistant"]
    assert reload["text"] == stored[0].content == stream["text"]
    assert reload["text"].startswith(reload["before"])
    assert reload["finishedNull"] is True

    # A tool call approved through the transport; the answer goes on with its outcome.
    approval = results["approval"]
    stored = await db(replies)(approval["sessionId"])
    assert approval["status"] == "ready" and approval["decision"] == "approved"
    assert [m.state for m in stored] == ["complete"]
    assert approval["text"] == stored[0].content
    assert "refunded" in approval["text"]
    types = [part["type"] for part in approval["parts"] if part["type"] != "step-start"]
    assert types[:2] == ["reasoning", "tool-refund_order"] and types[-1] == "text"
    assert approval["tool"]["state"] == "output-available"
    assert approval["tool"]["output"]["refunded"] == 89.9

    await check_edit(results["edit"])
    await check_together(results["together"])


async def check_edit(edit: dict[str, Any]) -> None:
    """An edit through ``sendMessage({text, messageId})``: the new version is shown with its
    answer, the old version and its answer are kept hidden, a retried edit stores nothing."""
    stored = [m for m in await db(all_messages)(edit["sessionId"]) if m.role != "system"]
    assert edit["first"]["roles"] == ["user", "assistant"]
    assert edit["roles"] == ["user", "assistant"] and edit["status"] == "ready"
    assert edit["ids"][0] == edit["first"]["ids"][0]  # the SDK keeps its message id
    assert "1002" in edit["text"] and edit["text"] != edit["first"]["text"]
    old_question, old_answer, question, answer = stored  # nothing stored twice
    assert (old_question.content, question.content) == ("hello there", "Where is order 1002?")
    assert question.version_of_id == old_question.pk and question.hidden_under_id is None
    assert old_question.hidden_under_id == old_answer.hidden_under_id == old_question.pk
    assert answer.hidden_under_id is None and answer.content == edit["text"]
    assert edit["retriedText"] == edit["text"]
    # Refused while a person is asked for: the SDK holds the error, nothing changed.
    assert edit["refused"]["status"] == "error"
    assert "human_in_control" in edit["refused"]["error"]


async def check_together(together: dict[str, Any]) -> None:
    """Two devices sent at once: each stream carried the answer to its own message."""
    asked = await db(user_messages)(together["sessionId"])
    links = await db(answered)(together["sessionId"])
    by_client = {m.client_id: m.pk for m in asked}
    mine = {device: by_client[together[device]["ids"][0]] for device in ("one", "two")}
    assert len(asked) == 2 and set(links) == set(mine.values())
    # Usually one answer each; both asked before the first run started: one answer to both.
    separate = links[mine["one"]] != links[mine["two"]]
    for device, order in (("one", "1001"), ("two", "1002")):
        result = together[device]
        assert result["status"] == "ready" and result["error"] is None
        assert result["text"] == links[mine[device]]
        assert order in result["text"] or not separate


@pytest.mark.parametrize("version", [5, 6, 7])
async def test_the_ai_sdk_chat_streams_stops_resumes_and_approves_over_the_websocket(
    daphne, version
):
    await check_version(agent_server(daphne), version)


async def test_tanstack_ai_chat_client_streams_stops_resumes_and_approves_over_the_websocket(
    daphne,
):
    server = agent_server(daphne)
    results = await run_scenarios(server, 0, TANSTACK, TANSTACK_SCENARIOS)
    assert set(results) == set(TANSTACK_SCENARIOS)

    stream = results["stream"]
    [reply] = await db(replies)(stream["sessionId"])
    asked = await db(user_messages)(stream["sessionId"])
    assert stream["roles"] == ["user", "assistant"] and stream["error"] is None
    assert stream["text"] == reply.content and reply.state == "complete"
    assert [m.client_id for m in asked] == [stream["ids"][0]]
    assert stream["ids"][1] == f"ds-{reply.pk}"

    stop = results["stop"]
    [reply] = await db(replies)(stop["sessionId"])
    assert reply.state == "cancelled"
    assert await db(cancel_reasons)(stop["sessionId"]) == ["user"]
    assert stop["text"] and reply.content.startswith(stop["text"])

    drop = results["drop"]
    [reply] = await db(replies)(drop["sessionId"])
    assert drop["sockets"] >= 2 and drop["roles"] == ["user", "assistant"]
    assert drop["text"] == reply.content == stream["text"]

    # A reload: the new client hydrates the conversation and rejoins the answer, once.
    reload = results["reload"]
    [reply] = await db(replies)(reload["sessionId"])
    assert reload["roles"] == ["user", "assistant"]
    assert reload["text"] == reply.content == stream["text"]
    assert reload["text"].startswith(reload["before"])

    approval = results["approval"]
    [reply] = await db(replies)(approval["sessionId"])
    assert approval["decision"] == "approved" and approval["requested"] == ["refund_order"]
    assert reply.state == "complete" and approval["text"] == reply.content
    [call] = [part for part in approval["parts"] if part["type"] == "tool-call"]
    assert call["output"]["refunded"] == 89.9

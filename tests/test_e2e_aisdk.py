"""The AI SDK endpoints driven by the real ``ai`` package (5.0.0, 6.0.326 and 7.0.173):
its ``DefaultChatTransport``, ``AbstractChat`` and ``readUIMessageStream`` against a real
Daphne with the demo agent, which pauses between words so that every interruption lands
in the middle of an answer. Each scenario ends with the chat the SDK holds and the same
session read through the REST API (tests/aisdk/driver.mjs)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests import services
from tests.live import ROOT, DaphneServer, server_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.timeout(120)]

RELEASES = ["ai-5", "ai-6", "ai-7"]
DRIVER = ROOT / "tests" / "aisdk" / "driver.mjs"
AGENT = {"thinking_seconds": 0.1, "tokens_per_second": 40, "seed": 11}


@pytest.fixture(scope="module")
def server(django_db_setup: Any, django_db_blocker: Any) -> Iterator[DaphneServer]:
    """One Daphne for the module, answering with the embedded demo agent."""
    services.require_node_packages()
    with django_db_blocker.unblock():
        env = server_env(
            ds_settings={"RUNNER": "embedded", "FLUSH_INTERVAL_MS": 20, "AGENT_OPTIONS": AGENT}
        )
    process = DaphneServer(env).start()
    yield process
    process.stop()


def drive(server: DaphneServer, release: str, scenario: str) -> dict[str, Any]:
    done = subprocess.run(
        ["node", str(DRIVER), release, server.http, scenario],
        cwd=ROOT / "tests",
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def assistants(chat: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in chat["messages"] if m["role"] == "assistant"]


def the_answer(result: dict[str, Any]) -> dict[str, Any]:
    """The chat's one answer, checked against the session's REST transcript."""
    chat = result["chat"]
    assert chat["status"] == "ready" and chat["error"] is None, chat["error"]
    [answer] = assistants(chat)
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant"]
    stored = {m["id"]: m for m in result["rest"]}
    assert [m["role"] for m in result["rest"]] == ["user", "assistant"]
    # The SDK's text is the stored reply's, each word once: no repeated prefix.
    assert answer["text"] == stored[answer["id"]]["content"]
    assert answer["text"] and answer["text"].count(answer["text"][:40]) == 1
    for part in answer["parts"]:
        assert part.get("state") in ("done", "output-available", None), part
    return answer


@pytest.mark.parametrize("release", RELEASES)
def test_send_and_stream(server, release):
    result = drive(server, release, "send")
    answer = the_answer(result)
    assert answer["text"].startswith("Thanks for your message.")
    assert result["resumeAfterEnd"] is None  # a finished chat resumes nothing: 204
    assert result["gets"] == [204]


@pytest.mark.parametrize("release", RELEASES)
def test_stop_then_resume_in_the_middle_of_an_answer(server, release):
    result = drive(server, release, "abort-resume")
    answer = the_answer(result)
    # The stop dropped the request only: the answer went on, and both readers of the
    # resumed stream got the whole of it from its start.
    assert result["partial"] and answer["text"].startswith(result["partial"])
    assert len(result["partial"]) < len(answer["text"])
    assert result["reconnected"] == {"id": answer["id"], "text": answer["text"]}
    assert result["resumeAfterEnd"] is None


@pytest.mark.parametrize("release", RELEASES)
def test_cancel_stops_the_answer_and_keeps_its_text(server, release):
    result = drive(server, release, "cancel")
    assert result["cancel"]["cancelled"] is True
    answer = the_answer(result)  # the text so far, as stored
    assert not answer["text"].endswith("bring in a colleague.")
    assert answer["metadata"]["state"] == "cancelled"
    assert result["resumeAfterEnd"] is None


@pytest.mark.parametrize("release", RELEASES)
def test_a_reloaded_page_resumes_the_answer(server, release):
    the_answer(drive(server, release, "reload"))


@pytest.mark.parametrize("release", RELEASES)
def test_the_same_chat_resumes_after_a_network_error(server, release):
    result = drive(server, release, "network-error")
    assert result["statusAfterCut"] == "error"
    answer = the_answer(result)
    assert result["partial"] and answer["text"].startswith(result["partial"][:10])


@pytest.mark.parametrize("release", RELEASES)
def test_reasoning_and_a_tool_call_with_streamed_input_and_output(server, release):
    answer = the_answer(drive(server, release, "tools"))
    kinds = [p["type"] for p in answer["parts"]]
    assert kinds == ["reasoning", "tool-order_status", "text"]
    tool = answer["parts"][1]
    assert tool["state"] == "output-available" and tool["output"]["order_id"] == "1002"
    assert "1002" in answer["text"]


@pytest.mark.parametrize("release", RELEASES)
def test_an_approval_answered_through_the_sdk(server, release):
    result = drive(server, release, "approval")
    [waiting] = assistants(result["waiting"])
    answer = the_answer(result)
    tool = next(p for p in answer["parts"] if p["type"] == "tool-refund_order")
    assert tool["state"] == "output-available" and tool["output"]["order_id"] == "1001"
    assert "refunded" in answer["text"]
    assert waiting["id"] == answer["id"]
    if release == "ai-5":
        # No approval chunks in 5.x: a data part carries the request.
        assert result["approvalStatus"] == 200
        assert any(p["type"] == "data-approval" for p in waiting["parts"])
    else:
        asked = next(p for p in waiting["parts"] if p["type"] == "tool-refund_order")
        assert asked["state"] == "approval-requested"
        assert tool["approval"]["approved"] is True


@pytest.mark.parametrize("release", RELEASES)
def test_regenerate_replaces_the_answer(server, release):
    result = drive(server, release, "regenerate")
    [first] = assistants(result["first"])
    answer = the_answer(result)
    assert answer["id"] != first["id"]
    assert answer["text"] == first["text"]  # the demo agent answers a question alike


@pytest.mark.parametrize("release", RELEASES)
def test_a_retried_post_stores_one_message_and_answers_the_same_stream(server, release):
    result = drive(server, release, "retry")
    assert result["header"] == "v1"
    first, second = result["answers"]
    assert first == second and first["text"]
    assert [m["role"] for m in result["rest"]] == ["user", "assistant"]
    assert result["rest"][0]["client_id"] == "retried-message-1"
    assert result["rest"][1]["content"] == first["text"]


@pytest.mark.parametrize("release", RELEASES)
def test_an_edit_adds_a_version_and_streams_its_answer(server, release):
    result = drive(server, release, "edit")
    result["rest"] = [m for m in result["rest"] if m["role"] != "system"]  # the handoff notice
    [first_answer] = assistants(result["first"])
    answer = the_answer(result)
    assert "1002" in answer["text"] and answer["id"] != first_answer["id"]
    edited = result["chat"]["messages"][0]
    assert edited["id"] == result["first"]["messages"][0]["id"]  # the SDK keeps its id
    assert edited["text"] == "Where is order 1002?"
    # The REST API: the new version and its answer shown; the old question and its answer
    # kept as hidden versions; the retried edit stored nothing and streamed the same answer.
    every = [m for m in result["restAll"] if m["role"] != "system"]
    assert [(m["role"], m["active"]) for m in every] == [
        ("user", False),
        ("assistant", False),
        ("user", True),
        ("assistant", True),
    ]
    old_question, old_answer, question, shown = every
    assert old_question["content"] == "Hello there, what can you do?"
    assert old_answer["id"] == first_answer["id"]
    assert question["version_of"] == int(old_question["id"])
    assert shown["id"] == answer["id"] and shown["content"] == answer["text"]
    assert result["retried"] == {"id": answer["id"], "text": answer["text"]}
    # Refused while a person is asked for, with the service's error code.
    assert result["handoffStatus"] == 200
    assert result["refused"]["status"] == "error"
    assert "human_in_control" in result["refused"]["error"]

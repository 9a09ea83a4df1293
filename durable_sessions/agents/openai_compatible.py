"""An agent for any server that speaks the OpenAI ``/chat/completions`` streaming format:
text, reasoning (``reasoning_content`` or ``reasoning`` deltas, where the server streams
them) and streaming function calling (``tools`` in the request, ``tool_calls`` deltas,
results sent back as ``tool`` messages)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
from django.utils.module_loading import import_string

from durable_sessions.agents import (
    Agent,
    AgentError,
    AgentOutput,
    HistoryMessage,
    Part,
    Reasoning,
    ToolCall,
    ToolInputDelta,
    Turn,
)
from durable_sessions.agents.tools import Tool

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful customer support assistant. Answer briefly and clearly. "
    "Human colleagues may also write in this conversation."
)


class OpenAICompatibleAgent(Agent):
    """Streams a chat completion from an OpenAI-compatible server.

    Options (each falls back to an environment variable): ``base_url``
    (``OPENAI_BASE_URL``, default ``https://api.openai.com/v1``), ``model``
    (``OPENAI_MODEL``), ``api_key`` (``OPENAI_API_KEY``); and ``system_prompt``,
    ``temperature``, ``stall_timeout`` (seconds without data before the reply fails,
    default 30), ``connect_timeout`` (default 10), ``extra_body`` (merged into the request),
    ``tools`` (:class:`~durable_sessions.agents.tools.Tool` objects or their dotted paths;
    a subclass may declare ``tools`` instead).

    It supports steering: the customer's steering messages are read between steps (a
    completion is not interrupted mid-stream) and follow the reply so far in the request.
    """

    supports_steering = True

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        temperature: float | None = None,
        stall_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        extra_body: dict[str, Any] | None = None,
        tools: list[Tool | str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if tools is not None:
            self.tools = [import_string(t) if isinstance(t, str) else t for t in tools]
        self.base_url = (
            base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        ).rstrip("/")
        self.model = model or os.environ.get("OPENAI_MODEL") or ""
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.system_prompt = system_prompt
        self.temperature = temperature
        self.stall_timeout = stall_timeout
        self.connect_timeout = connect_timeout
        self.extra_body = extra_body or {}

    @classmethod
    def reply_messages(cls, parts: tuple[Part, ...] | list[Part]) -> list[dict[str, Any]]:
        """A reply's parts as chat messages: per step, the assistant's text and tool calls,
        then one ``tool`` message per call with its result."""
        messages: list[dict[str, Any]] = []
        steps: dict[int, list[Part]] = {}
        for part in parts:
            steps.setdefault(part.step, []).append(part)
        for step in steps.values():
            text = "".join(p.text for p in step if p.type == "text")
            calls = [p for p in step if p.type == "tool_call"]
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                message["tool_calls"] = [
                    {
                        "id": p.tool_call_id,
                        "type": "function",
                        "function": {"name": p.tool_name, "arguments": json.dumps(p.input or {})},
                    }
                    for p in calls
                ]
            if text or calls:
                messages.append(message)
            for p in calls:
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": p.tool_call_id,
                        "content": json.dumps(p.result, default=str),
                    }
                )
        return messages

    @classmethod
    def to_chat_messages(cls, message: HistoryMessage) -> list[dict[str, Any]]:
        if message.role == "assistant" and any(p.type == "tool_call" for p in message.parts):
            return cls.reply_messages(message.parts)
        return [cls.to_chat_message(message)]

    @staticmethod
    def to_chat_message(message: HistoryMessage) -> dict[str, str]:
        if message.role == "user":
            return {"role": "user", "content": message.content}
        if message.role == "operator":
            # The model should know a human colleague said this, not itself.
            return {
                "role": "assistant",
                "content": f"[{message.author}, a human colleague, wrote] {message.content}",
            }
        if message.role == "system":
            return {"role": "system", "content": message.content}
        return {"role": "assistant", "content": message.content}

    def request_body(self, turn: Turn) -> dict[str, Any]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.system_prompt}]
        for message in turn.history:
            messages += self.to_chat_messages(message)
        messages += self.reply_messages(turn.reply)  # this reply's earlier steps
        # What the customer added while this reply was being written: after it, so the
        # model's next step goes on from there.
        messages += [self.to_chat_message(m) for m in turn.steered]
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True}
        if self.tools:
            body["tools"] = [t.spec() for t in self.tools]
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return {**body, **self.extra_body}

    async def stream(self, turn: Turn) -> AsyncIterator[AgentOutput]:
        if not self.model:
            raise AgentError("no model configured (option 'model' or OPENAI_MODEL)")
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        timeout = httpx.Timeout(self.stall_timeout, connect=self.connect_timeout)
        url = f"{self.base_url}/chat/completions"
        try:
            async with (
                httpx.AsyncClient(timeout=timeout) as client,
                client.stream("POST", url, json=self.request_body(turn), headers=headers) as resp,
            ):
                if resp.status_code != 200:
                    detail = (await resp.aread()).decode("utf-8", "replace")[:300]
                    raise AgentError(f"the model server answered HTTP {resp.status_code}: {detail}")
                finished = False
                calls = _Calls()
                async for line in resp.aiter_lines():
                    items = self._parse_line(line, calls)
                    if items is None:
                        finished = True
                        break
                    for item in items:
                        yield item
                if not finished:
                    raise AgentError("the model's stream ended before it was complete")
                for call in calls.complete():
                    yield call
        except httpx.TimeoutException:
            raise AgentError(
                f"the model server stalled: no data for {self.stall_timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise AgentError(f"cannot reach the model server: {exc}") from None

    @staticmethod
    def _parse_line(line: str, calls: _Calls | None = None) -> list[AgentOutput] | None:
        """What one server-sent-events line holds (reasoning, text, tool-call input
        chunks); None at ``[DONE]``."""
        if not line.startswith("data:"):
            return []  # blank separators, comments (":"), event names
        data = line[5:].strip()
        if data == "[DONE]":
            return None
        try:
            payload = json.loads(data)
        except ValueError:
            raise AgentError("the model server sent malformed JSON") from None
        if not isinstance(payload, dict):
            raise AgentError("the model server sent something other than a JSON object")
        if payload.get("error"):
            raise AgentError(f"the model server reported an error: {payload['error']}")
        items: list[AgentOutput] = []
        for choice in payload.get("choices") or []:
            delta = (choice.get("delta") if isinstance(choice, dict) else None) or {}
            # Servers name it differently: reasoning_content (DeepSeek, vLLM), reasoning.
            thought = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(thought, str) and thought:
                items.append(Reasoning(thought))
            content = delta.get("content")
            if isinstance(content, str) and content:
                items.append(content)
            for chunk in delta.get("tool_calls") or []:
                if calls is not None and isinstance(chunk, dict):
                    items.extend(calls.add(chunk))
        return items


class _Calls:
    """Tool calls assembled from ``tool_calls`` deltas (keyed by their ``index``)."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, str]] = {}

    def add(self, chunk: dict[str, Any]) -> list[AgentOutput]:
        index = chunk.get("index", 0)
        function = chunk.get("function") or {}
        call = self.calls.setdefault(
            index if isinstance(index, int) else 0, {"id": "", "name": "", "arguments": ""}
        )
        if isinstance(chunk.get("id"), str) and not call["id"]:
            call["id"] = chunk["id"]
        if isinstance(function.get("name"), str) and not call["name"]:
            call["name"] = function["name"]
        arguments = function.get("arguments")
        if not isinstance(arguments, str) or not arguments:
            return []
        call["arguments"] += arguments
        if not call["id"]:
            call["id"] = f"call_{index}"
        return [ToolInputDelta(call["id"], call["name"], arguments)]

    def complete(self) -> list[ToolCall]:
        """The calls with their parsed input (an unparsable input is left for the
        runtime to refuse: it fails its schema, not the reply)."""
        done = []
        for index, call in sorted(self.calls.items()):
            try:
                parsed = json.loads(call["arguments"] or "{}")
            except ValueError:
                parsed = None
            done.append(ToolCall(call["name"], parsed, call["id"] or f"call_{index}"))
        return done

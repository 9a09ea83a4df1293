"""An agent for any server that speaks the OpenAI ``/chat/completions`` streaming format."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx

from durable_sessions.agents import Agent, AgentError, HistoryMessage, Turn

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
    default 30), ``connect_timeout`` (default 10), ``extra_body`` (merged into the request).
    """

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
        **options: Any,
    ) -> None:
        super().__init__(**options)
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
        messages = [{"role": "system", "content": self.system_prompt}]
        messages += [self.to_chat_message(m) for m in turn.history]
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return {**body, **self.extra_body}

    async def stream(self, turn: Turn) -> AsyncIterator[str]:
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
                async for line in resp.aiter_lines():
                    chunk = self._parse_line(line)
                    if chunk is None:
                        finished = True
                        break
                    if chunk:
                        yield chunk
                if not finished:
                    raise AgentError("the model's stream ended before it was complete")
        except httpx.TimeoutException:
            raise AgentError(
                f"the model server stalled: no data for {self.stall_timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise AgentError(f"cannot reach the model server: {exc}") from None

    @staticmethod
    def _parse_line(line: str) -> str | None:
        """The text of one server-sent-events line; None at ``[DONE]``; "" for no text."""
        if not line.startswith("data:"):
            return ""  # blank separators, comments (":"), event names
        data = line[5:].strip()
        if data == "[DONE]":
            return None
        try:
            payload = json.loads(data)
        except ValueError:
            raise AgentError("the model server sent malformed JSON") from None
        if isinstance(payload, dict) and payload.get("error"):
            raise AgentError(f"the model server reported an error: {payload['error']}")
        text = []
        for choice in payload.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if isinstance(content, str):
                text.append(content)
        return "".join(text)

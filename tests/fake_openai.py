"""A local server that speaks the OpenAI ``/chat/completions`` streaming format.

Modes: ``ok`` (every token, then ``[DONE]``), ``die`` (some tokens, then the connection
drops), ``stall`` (some tokens, then silence), ``error`` (HTTP 500), ``tools`` (reasoning,
then the ``tool_calls`` given, their arguments in two chunks each; once the request holds
``tool`` results, the tokens), ``tool_error`` (as ``tools``, then HTTP 500 when the results
come back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any


class FakeChatServer:
    def __init__(
        self,
        tokens: list[str],
        mode: str = "ok",
        cut_after: int = 3,
        tool_calls: list[tuple[str, str, str]] | None = None,
        reasoning: list[str] | None = None,
    ) -> None:
        self.tokens = tokens
        self.tool_calls = tool_calls or []  # (id, name, arguments as JSON text)
        self.reasoning = reasoning or []
        self.mode = mode
        self.cut_after = cut_after
        self.requests: list[dict[str, Any]] = []
        self.server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def __aenter__(self) -> FakeChatServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:] if x)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(
                {"path": lines[0].split(" ")[1], "headers": headers, "body": json.loads(body)}
            )
            answered = any(m.get("role") == "tool" for m in self.requests[-1]["body"]["messages"])
            if self.mode == "error" or (self.mode == "tool_error" and answered):
                payload = b'{"error": {"message": "overloaded"}}'
                writer.write(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(payload), payload)
                )
                await writer.drain()
                return
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
            )
            if self.mode in ("tools", "tool_error") and not answered:
                await self._call_tools(writer)
                return
            for index, token in enumerate(self.tokens):
                if self.mode in ("die", "stall") and index == self.cut_after:
                    if self.mode == "stall":
                        await asyncio.sleep(3600)
                    return  # "die": the connection drops mid-stream
                chunk = {"choices": [{"index": 0, "delta": {"content": token}}]}
                writer.write(f"data: {json.dumps(chunk)}\n\n".encode())
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(
                b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
            )
            writer.write(b"data: [DONE]\n\n")
            await writer.drain()
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _call_tools(self, writer: asyncio.StreamWriter) -> None:
        def send(delta: dict[str, Any], finish: str | None = None) -> None:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            writer.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())

        for thought in self.reasoning:
            send({"reasoning_content": thought})
        for index, (call_id, name, arguments) in enumerate(self.tool_calls):
            half = len(arguments) // 2
            first = {"index": index, "id": call_id, "type": "function"}
            send({"tool_calls": [{**first, "function": {"name": name, "arguments": ""}}]})
            for piece in (arguments[:half], arguments[half:]):
                send({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            await writer.drain()
        send({}, "tool_calls")
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()

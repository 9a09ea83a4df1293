"""Writing one AI reply as parts: the agent's output becomes parts, their deltas coalesced.

:class:`ReplyWriter` opens the reply at the agent's first output, starts a part when the
kind of output changes (text, reasoning, a tool call's input, data, a source), buffers the
streamed text of the current part in a :class:`~durable_sessions.runtime.coalescer.Coalescer`
and appends it through the group commit, each delta with its part's id. Every write is
retried while the database is away, and a retry first checks whether the failed attempt
was committed after all, so nothing is written twice.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async

from durable_sessions import service
from durable_sessions.agents import (
    AgentError,
    Data,
    Reasoning,
    Source,
    ToolCall,
    ToolInputDelta,
)
from durable_sessions.app_settings import ds_settings
from durable_sessions.errors import MessageFinished, ReplyInProgress
from durable_sessions.models import Message, MessagePart, PartType
from durable_sessions.observability import metrics
from durable_sessions.runtime import resumption
from durable_sessions.runtime.coalescer import Coalescer
from durable_sessions.service import parts, runs
from durable_sessions.service.transient import retrying
from durable_sessions.service.validation import storable

db = database_sync_to_async
MAX_TOOL_NAME = 100
MAX_CALL_ID = 100


@dataclass
class OpenPart:
    """The part the agent's output currently grows."""

    pk: int
    wire_id: str
    type: str
    call_id: str = ""
    written: int = 0  # characters committed so far


@dataclass
class PendingCall:
    """A tool call of the current step whose input is complete."""

    pk: int
    name: str
    input: Any
    error: str = ""


@dataclass
class ReplyWriter:
    """Writes a run's reply; ``announce(status, tool)`` tells clients what the agent does."""

    run_id: int
    session_id: uuid.UUID
    announce: Callable[[str, str | None], Awaitable[None]]
    message: Message | None = None
    step: int = 0
    next_index: int = 0
    part: OpenPart | None = None
    calls: list[PendingCall] = field(default_factory=list)
    # The tool-call parts of this step by call id (a model may interleave their input).
    tool_parts: dict[str, OpenPart] = field(default_factory=dict)
    # When the run was created: its time to first token is measured from there.
    run_created_at: datetime | None = None
    # A text part an interrupted attempt left open, while this attempt says it again.
    cut: resumption.CutPart | None = None

    def __post_init__(self) -> None:
        self.buffer = Coalescer(ds_settings.FLUSH_INTERVAL_MS / 1000.0, ds_settings.FLUSH_MAX_CHARS)

    @property
    def what(self) -> str:
        return f"run {self.run_id}"

    # --- the reply -----------------------------------------------------------------------

    async def adopt(self, message: Message, existing: list[MessagePart]) -> None:
        """Continue a reply an earlier worker began (after its run was suspended, or an
        attempt that was interrupted: its open text part is continued)."""
        self.message = message
        self.next_index = max((p.index for p in existing), default=-1) + 1
        self.step = max((p.step for p in existing), default=-1) + 1
        cut = resumption.find_cut(existing)
        if cut is not None:
            text = await db(resumption.cut_text)(cut)
            self.part = OpenPart(cut.pk, cut.wire_id, PartType.TEXT, written=len(text))
            self.cut = resumption.CutPart(cut.pk, text)

    async def open(self, *, announce: bool = True) -> None:
        attempts = 0

        async def start() -> Message:
            nonlocal attempts
            attempts += 1
            try:
                return await service.astart_assistant_message(self.session_id)
            except ReplyInProgress:
                # A retry finds the reply of the attempt whose commit was not confirmed.
                adopted = await db(runs.streaming_reply)(self.session_id) if attempts > 1 else None
                if adopted is None:
                    raise
                return adopted

        self.message = await retrying(start, f"{self.what}: start the reply")
        await retrying(
            lambda: db(runs.attach_message)(self.run_id, self.message.pk),
            f"{self.what}: attach",
        )
        if announce:
            metrics.first_token(self.run_created_at)
            await self.announce("streaming", None)

    async def end(self, end: Callable[..., Awaitable[int]], *args: Any, what: str) -> None:
        """End the reply with ``end`` (finish or fail), once, despite retries."""
        assert self.message is not None
        message, attempts = self.message, 0

        async def call() -> None:
            nonlocal attempts
            attempts += 1
            try:
                await end(message, *args)
            except MessageFinished:
                if attempts == 1:
                    raise
                # The failed attempt was committed before its connection broke.

        await retrying(call, f"{self.what}: {what} the reply")
        self.message = None

    async def finish(self) -> None:
        await self.end_part()
        if self.message is not None:
            await self.end(service.afinish_assistant_message, what="finish")

    # --- parts ---------------------------------------------------------------------------

    async def start_part(self, type_: str, **fields: Any) -> MessagePart:
        if self.message is None:
            await self.open(announce=type_ not in (PartType.REASONING, PartType.TOOL_CALL))
        assert self.message is not None
        message_id, index = self.message.pk, self.next_index
        part = await retrying(
            lambda: db(parts.start_part)(message_id, type_, index=index, step=self.step, **fields),
            f"{self.what}: start a part",
        )
        self.next_index = index + 1
        return part

    async def end_part(self) -> None:
        """Write what the current part holds and end it (text and reasoning)."""
        if self.cut is not None:
            await resumption.settle(self)
        await self.flush()
        part, self.part = self.part, None
        if part is not None and part.type in (PartType.TEXT, PartType.REASONING):
            await retrying(lambda: db(parts.end_part)(part.pk), f"{self.what}: end a part")

    async def _grow(self, type_: str, text: str, *, call_id: str = "", name: str = "") -> None:
        current = self.part
        if type_ == PartType.TOOL_CALL and call_id in self.tool_parts:
            if current is not self.tool_parts[call_id]:
                await self.end_part()
                self.part = self.tool_parts[call_id]
        elif current is None or current.type != type_ or current.call_id != call_id:
            await self.end_part()
            fields: dict[str, Any] = {}
            if type_ == PartType.TOOL_CALL:
                fields = {"tool_name": name, "tool_call_id": call_id}
            part = await self.start_part(type_, **fields)
            self.part = OpenPart(part.pk, part.wire_id, type_, call_id)
            if type_ == PartType.TOOL_CALL:
                self.tool_parts[call_id] = self.part
            if type_ == PartType.REASONING:
                await self.announce("thinking", None)
            elif type_ == PartType.TEXT and self.next_index > 1:
                await self.announce("streaming", None)
        if text and self.buffer.add(text):
            await self.flush()

    async def flush(self) -> None:
        part = self.part
        if not self.buffer or self.message is None or part is None:
            self.buffer.take()
            return
        # A model may emit NUL or a lone surrogate: shown as U+FFFD rather than refused.
        message, text, before = self.message, storable(self.buffer.take()), part.written
        attempts = 0

        async def append() -> None:
            nonlocal attempts
            attempts += 1
            # A retry first looks whether the failed attempt was committed after all (its
            # connection broke during the commit): the part's length says so.
            if attempts > 1 and await db(parts.part_length)(part.pk) == before + len(text):
                return
            # The service re-checks, under the session lock, that the AI still has control
            # and the reply is still streaming: no text after a takeover.
            await service.delta_writer.append(
                message.session_id,
                message.pk,
                text,
                part=(part.pk, part.wire_id, part.type == PartType.TEXT),
            )

        await retrying(append, f"{self.what}: append")
        part.written = before + len(text)

    # --- the agent's output --------------------------------------------------------------

    async def add(self, item: Any) -> None:
        """Write one item the agent yielded (not a Handoff)."""
        if isinstance(item, str):
            if item and self.cut is not None:
                item = await resumption.continue_text(self, item)
            if item:
                await self._grow(PartType.TEXT, item)
        elif isinstance(item, Reasoning):
            if item.text:
                await self._grow(PartType.REASONING, str(item.text))
        elif isinstance(item, ToolInputDelta):
            call_id = _call_id(item.call_id)
            if not call_id:
                raise AgentError("a tool input chunk needs the call_id of its call")
            await self._grow(
                PartType.TOOL_CALL, str(item.text), call_id=call_id, name=_tool_name(item.name)
            )
        elif isinstance(item, ToolCall):
            await self._call(item)
        elif isinstance(item, Data):
            await self._complete(PartType.DATA, {"name": str(item.name)[:100], "data": item.data})
        elif isinstance(item, Source):
            await self._complete(
                PartType.SOURCE, {"url": str(item.url)[:2000], "title": str(item.title)[:500]}
            )
        # Anything else is ignored, as before: an agent may yield None or empty chunks.

    def take_calls(self) -> list[PendingCall]:
        """The step's tool calls, in order; a call whose input never completed is one
        that fails."""
        for left in self.tool_parts.values():
            self.calls.append(PendingCall(left.pk, "", None, "the call's input never completed"))
        calls, self.calls, self.tool_parts = self.calls, [], {}
        return calls

    async def _complete(self, type_: str, data: dict[str, Any]) -> None:
        await self.end_part()
        try:
            json.dumps(data)
        except (TypeError, ValueError):
            raise AgentError(f"a {type_} part must hold JSON") from None
        await self.start_part(type_, data=data)

    async def _call(self, call: ToolCall) -> None:
        call_id, name = _call_id(call.call_id), _tool_name(call.name)
        streamed = self.tool_parts.pop(call_id, None) if call_id else None
        if streamed is None:
            await self.end_part()
            part = await self.start_part(PartType.TOOL_CALL, tool_name=name, tool_call_id=call_id)
            current = OpenPart(part.pk, part.wire_id, PartType.TOOL_CALL, call_id)
        else:
            current = streamed
            if self.part is current:
                await self.flush()
                self.part = None
        error = ""
        try:
            tool_input = json.loads(json.dumps(call.input))
        except (TypeError, ValueError):
            tool_input, error = None, "the tool's input is not JSON"
        self.calls.append(PendingCall(current.pk, name, tool_input, error))


def _call_id(value: Any) -> str:
    return str(value or "")[:MAX_CALL_ID]


def _tool_name(value: Any) -> str:
    return str(value or "")[:MAX_TOOL_NAME]

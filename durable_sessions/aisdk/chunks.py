"""The session log as UI message stream chunks, for one answer of the agent.

:class:`AnswerChunks` is fed the log's frames in seq order and returns the chunks that
the AI SDK's ``processUIMessageStream`` applies. ai 5.0.0 validates chunks strictly
(unknown keys are an error), so every chunk carries the fields of 5.0.0's schema only;
the two chunks 5.0.0 does not know (``tool-approval-request``, ``tool-output-denied``)
are left out for clients that ask for the 5.x dialect.

A chunk is never sent for a part the client has not seen start: the SDK refuses a delta
without its ``*-start``. A compacted answer (``message.snapshot``) is told as the parts it
holds, each started, filled and ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from durable_sessions import wire
from durable_sessions.models import PartState, PartType, Role, part_wire_id

Chunk = dict[str, Any]

ENDINGS = {
    wire.MESSAGE_COMPLETED: "completed",
    wire.MESSAGE_CANCELLED: "cancelled",
    wire.MESSAGE_FAILED: "failed",
}
# Tool states after which the call has an outcome the client shows.
OUTCOMES = {PartState.DONE, PartState.ERROR, PartState.DENIED, PartState.CANCELLED}
# Messages by people and the system, shown inside the answer as a data part.
NOTICE_ROLES = {Role.OPERATOR, Role.SYSTEM}
NOTICE_TYPE = "data-notice"
# An approval request, for ai 5 clients.
APPROVAL_TYPE = "data-approval"


def message_id_of(pk: int) -> str:
    """The id of a stored message in the AI SDK (its REST id, as a string)."""
    return str(pk)


@dataclass
class PartSeen:
    """What the client was told about one part so far."""

    kind: str
    step: int
    text_sent: int = 0  # characters of text (or tool input) sent
    open: bool = True
    tool_call_id: str = ""
    input_sent: bool = False
    outcome_sent: bool = False
    approval_sent: bool = False


@dataclass
class AnswerChunks:
    """One answer of the agent as chunks.

    ``reply_id``: the answer's message when known (a continuation after an approval);
    else the first assistant message created in the frames fed becomes the answer.
    ``approvals``: send ai 6/7's approval chunks (False for ai 5 clients).
    """

    reply_id: int | None = None
    # The message whose answer this is: a reply whose run answers other messages (another
    # device's, sent at the same time) is not it.
    asked: int | None = None
    approvals: bool = True
    session_id: str = ""
    parts: dict[str, PartSeen] = field(default_factory=dict)
    step: int | None = None
    started: bool = False
    finished: bool = False
    notices: list[Chunk] = field(default_factory=list)

    # --- the answer's frame ---

    def start(self) -> list[Chunk]:
        self.started = True
        chunk: Chunk = {"type": "start"}
        if self.reply_id is not None:
            chunk["messageId"] = message_id_of(self.reply_id)
        chunk["messageMetadata"] = {"sessionId": self.session_id}
        out = [chunk, *self.notices]
        self.notices = []
        return out

    def finish(self, state: str, extra: dict[str, Any] | None = None) -> list[Chunk]:
        """Close what is open and end the answer."""
        out: list[Chunk] = [] if self.started else self.start()
        for part_id, seen in self.parts.items():
            if seen.open and seen.kind in (PartType.TEXT, PartType.REASONING):
                out.append({"type": f"{self._prefix(seen)}-end", "id": part_id})
                seen.open = False
        if self.step is not None:
            out.append({"type": "finish-step"})
            self.step = None
        metadata = {"sessionId": self.session_id, "state": state, **(extra or {})}
        out.append({"type": "finish", "messageMetadata": metadata})
        self.finished = True
        return out

    @property
    def awaiting_approval(self) -> bool:
        return any(s.approval_sent and not s.outcome_sent for s in self.parts.values())

    def continue_after(self, parts: list[dict[str, Any]], pending: set[str]) -> list[Chunk]:
        """Start a continuation of an answer whose ``parts`` the client holds already;
        the tool calls in ``pending`` wait for their outcome there."""
        for part in parts:
            seen = PartSeen(part["type"], part.get("step", 0), open=False)
            if part["type"] == PartType.TOOL_CALL:
                seen.tool_call_id = part.get("tool_call_id") or part["id"]
                seen.input_sent = True
                seen.approval_sent = part.get("approval") is not None
                seen.outcome_sent = part["id"] not in pending and part.get("state") in OUTCOMES
            seen.text_sent = len(part.get("text") or part.get("input_text") or "")
            self.parts[part["id"]] = seen
        out = self.start()
        self.step = max((p.get("step", 0) for p in parts), default=0)
        out.append({"type": "start-step"})
        return out

    # --- frames ---

    def feed(self, frame: dict[str, Any]) -> list[Chunk]:
        kind, data = frame.get("type"), frame.get("data") or {}
        if self.finished:
            return []
        if kind == wire.MESSAGE_CREATED:
            return self._created(data.get("message") or {})
        if data.get("message_id") != self.reply_id or self.reply_id is None:
            if kind == wire.MESSAGE_SNAPSHOT:
                message = data.get("message") or {}
                if self.reply_id is not None and message.get("id") == self.reply_id:
                    return self._snapshot(message)
            return []
        if kind == wire.PART_STARTED:
            return self._part(data["part"])
        if kind == wire.MESSAGE_DELTA:
            part_id = data.get("part_id") or part_wire_id(self.reply_id, 0)
            out = self._ensure_text(part_id)
            return out + self._grow(part_id, data.get("text", ""))
        if kind == wire.PART_DELTA:
            return self._grow(data.get("part_id", ""), data.get("text", ""))
        if kind == wire.PART_ENDED:
            return self._end(data.get("part_id", ""))
        if kind == wire.TOOL_UPDATED:
            return self._tool(data)
        if kind in ENDINGS:
            extra = {"error": data["error"]} if data.get("error") else {}
            if data.get("reason"):
                extra["reason"] = data["reason"]
            out = []
            if kind == wire.MESSAGE_FAILED:
                out.append({"type": "error", "errorText": str(data.get("error") or "failed")})
            return out + self.finish(ENDINGS[kind], extra)
        return []

    def _created(self, message: dict[str, Any]) -> list[Chunk]:
        role = message.get("role")
        if self.reply_id is None and role == Role.ASSISTANT and self._answers_asked(message):
            self.reply_id = message.get("id")
            return self.start() + self._parts_of(message)
        if role in NOTICE_ROLES:
            notice = {
                "type": NOTICE_TYPE,
                "id": f"notice-{message.get('id')}",
                "data": {
                    "messageId": message_id_of(message.get("id", 0)),
                    "role": role,
                    "author": (message.get("author") or {}).get("display_name", ""),
                    "content": message.get("content", ""),
                },
            }
            if not self.started:
                self.notices.append(notice)  # shown once the answer starts (or ends unstarted)
                return []
            return [notice]
        return []

    def _answers_asked(self, message: dict[str, Any]) -> bool:
        answers = message.get("answers")
        return self.asked is None or not isinstance(answers, list) or self.asked in answers

    def _parts_of(self, message: dict[str, Any]) -> list[Chunk]:
        out: list[Chunk] = []
        for part in message.get("parts") or ():
            out += self._part(part)
        return out

    def _snapshot(self, message: dict[str, Any]) -> list[Chunk]:
        """A compacted run of events: bring every part to where the snapshot has it."""
        out: list[Chunk] = []
        for part in message.get("parts") or ():
            seen = self.parts.get(part["id"])
            if seen is None:
                out += self._part(part)
                continue
            if part["type"] == PartType.TOOL_CALL:
                out += self._grow(part["id"], (part.get("input_text") or "")[seen.text_sent :])
                out += self._tool({**part, "part_id": part["id"]})
            elif part["type"] in (PartType.TEXT, PartType.REASONING):
                out += self._grow(part["id"], (part.get("text") or "")[seen.text_sent :])
                if part.get("state") != PartState.STREAMING:
                    out += self._end(part["id"])
        return out

    # --- parts ---

    def _step(self, step: int) -> list[Chunk]:
        if self.step == step:
            return []
        out: list[Chunk] = [{"type": "finish-step"}] if self.step is not None else []
        self.step = step
        return [*out, {"type": "start-step"}]

    @staticmethod
    def _prefix(seen: PartSeen) -> str:
        return "text" if seen.kind == PartType.TEXT else "reasoning"

    def _ensure_text(self, part_id: str) -> list[Chunk]:
        if part_id in self.parts:
            return []
        out = self._step(self.step or 0)
        self.parts[part_id] = PartSeen(PartType.TEXT, self.step or 0)
        return [*out, {"type": "text-start", "id": part_id}]

    def _part(self, part: dict[str, Any]) -> list[Chunk]:
        part_id, kind, step = part["id"], part["type"], part.get("step", 0)
        if part_id in self.parts:
            return []
        out = self._step(step)
        seen = self.parts[part_id] = PartSeen(kind, step)
        if kind in (PartType.TEXT, PartType.REASONING):
            out.append({"type": f"{self._prefix(seen)}-start", "id": part_id})
            out += self._grow(part_id, part.get("text") or "")
            if part.get("state") not in (PartState.STREAMING, None):
                out += self._end(part_id)
        elif kind == PartType.TOOL_CALL:
            seen.tool_call_id = part.get("tool_call_id") or part_id
            out.append(
                {
                    "type": "tool-input-start",
                    "toolCallId": seen.tool_call_id,
                    "toolName": part.get("tool_name") or "tool",
                }
            )
            out += self._grow(part_id, part.get("input_text") or "")
            out += self._tool({**part, "part_id": part_id})
        elif kind == PartType.DATA:
            seen.open = False
            name = str(part.get("name") or "data")
            out.append({"type": f"data-{name}", "id": part_id, "data": part.get("data")})
        elif kind == PartType.SOURCE:
            seen.open = False
            chunk: Chunk = {"type": "source-url", "sourceId": part_id, "url": part.get("url", "")}
            if part.get("title"):
                chunk["title"] = part["title"]
            out.append(chunk)
        return out

    def _grow(self, part_id: str, text: str) -> list[Chunk]:
        seen = self.parts.get(part_id)
        if seen is None or not text or (not seen.open and seen.kind != PartType.TOOL_CALL):
            return []
        seen.text_sent += len(text)
        if seen.kind == PartType.TOOL_CALL:
            if seen.input_sent:
                return []
            return [
                {
                    "type": "tool-input-delta",
                    "toolCallId": seen.tool_call_id,
                    "inputTextDelta": text,
                }
            ]
        return [{"type": f"{self._prefix(seen)}-delta", "id": part_id, "delta": text}]

    def _end(self, part_id: str) -> list[Chunk]:
        seen = self.parts.get(part_id)
        if seen is None or not seen.open or seen.kind not in (PartType.TEXT, PartType.REASONING):
            return []
        seen.open = False
        return [{"type": f"{self._prefix(seen)}-end", "id": part_id}]

    def _tool(self, data: dict[str, Any]) -> list[Chunk]:
        seen = self.parts.get(data.get("part_id", ""))
        if seen is None or seen.kind != PartType.TOOL_CALL:
            return []
        state = data.get("state")
        call = seen.tool_call_id
        out: list[Chunk] = []
        if state == PartState.INPUT_STREAMING:
            return out
        if not seen.input_sent:
            seen.input_sent = True
            out.append(
                {
                    "type": "tool-input-available",
                    "toolCallId": call,
                    "toolName": data.get("tool_name") or "tool",
                    "input": data.get("input") if data.get("input") is not None else {},
                }
            )
        approval = data.get("approval")
        if state == PartState.AWAITING_APPROVAL and approval and not seen.approval_sent:
            seen.approval_sent = True
            if self.approvals:
                out.append(
                    {
                        "type": "tool-approval-request",
                        "approvalId": approval["id"],
                        "toolCallId": call,
                    }
                )
            else:  # ai 5 has no approval chunk: a data part the host shows and answers
                request = {
                    "approvalId": approval["id"],
                    "toolCallId": call,
                    "toolName": data.get("tool_name") or "tool",
                }
                out.append({"type": APPROVAL_TYPE, "id": approval["id"], "data": request})
        if state in OUTCOMES and not seen.outcome_sent:
            seen.outcome_sent = True
            seen.open = False
            if state == PartState.DONE:
                out.append(
                    {
                        "type": "tool-output-available",
                        "toolCallId": call,
                        "output": data.get("output"),
                    }
                )
            elif state == PartState.DENIED and self.approvals:
                out.append({"type": "tool-output-denied", "toolCallId": call})
            else:
                reason = data.get("error") or state
                out.append(
                    {"type": "tool-output-error", "toolCallId": call, "errorText": str(reason)}
                )
        return out

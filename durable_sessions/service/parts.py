"""The parts of an AI reply: started, ended, and a tool call's input and outcome.

Deltas of streamed parts go through the group commit (:mod:`.deltas`); everything else
here is a unit of work that re-checks, under the session lock, that the reply is still
streaming and the AI still in control, so no part starts or changes after a takeover.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db.models import Max
from django.utils import timezone

from durable_sessions import wire
from durable_sessions.errors import InvalidInput, MessageFinished, NotInControl
from durable_sessions.models import (
    Control,
    Message,
    MessagePart,
    MessageState,
    PartState,
    PartType,
)
from durable_sessions.service.text import StreamedText, streaming_text
from durable_sessions.service.unit import SessionWrite, session_write
from durable_sessions.service.validation import MAX_REASON_CHARS

# Tool-call states after which nothing more happens to the call.
TOOL_FINAL = (PartState.DONE, PartState.ERROR, PartState.DENIED, PartState.CANCELLED)
# States of a tool call the runtime still has to act on.
TOOL_OPEN = (
    PartState.INPUT_STREAMING,
    PartState.AWAITING_APPROVAL,
    PartState.APPROVED,
    PartState.RUNNING,
)
MAX_ERROR_CHARS = 2000


def _message_session(message_id: int) -> uuid.UUID:
    session_id = Message.objects.filter(pk=message_id).values_list("session_id", flat=True).first()
    if session_id is None:
        raise MessageFinished(f"message {message_id} does not exist")
    return session_id


def _require_streaming(w: SessionWrite, message_id: int) -> None:
    state = Message.objects.filter(pk=message_id).values_list("state", flat=True).first()
    if state != MessageState.STREAMING:
        raise MessageFinished(f"message {message_id} is no longer streaming")
    w.require_open()
    if w.control != Control.AI:
        raise NotInControl(f"the AI no longer controls session {w.session_id}")


def start_part(
    message_id: int,
    type_: str,
    *,
    index: int | None = None,
    step: int = 0,
    text: str = "",
    tool_name: str = "",
    tool_call_id: str = "",
    data: dict[str, Any] | None = None,
) -> MessagePart:
    """Add the next part to a streaming reply, with its ``part.started`` event.

    Text and reasoning start ``streaming``, a tool call ``input-streaming``; data and
    source parts are complete at once (``done``). With ``index`` (the writer's count of
    parts), a retry whose first attempt was committed returns that part.
    """
    if type_ not in PartType.values:
        raise InvalidInput("type", f"unknown part type {type_!r}")
    state = {
        PartType.TEXT: PartState.STREAMING,
        PartType.REASONING: PartState.STREAMING,
        PartType.TOOL_CALL: PartState.INPUT_STREAMING,
    }.get(type_, PartState.DONE)
    session_id = _message_session(message_id)
    with session_write(session_id) as w:
        _require_streaming(w, message_id)
        last = MessagePart.objects.filter(message_id=message_id).aggregate(n=Max("index"))["n"]
        if index is not None and last is not None and index <= last:
            existing = MessagePart.objects.get(message_id=message_id, index=index)
            if existing.type != type_:
                raise InvalidInput("index", f"part {index} of message {message_id} exists")
            return existing
        now = timezone.now()
        part = MessagePart.objects.create(
            session_id=session_id,
            message_id=message_id,
            index=0 if last is None else last + 1,
            step=step,
            type=type_,
            state=state,
            text=text,
            tool_name=tool_name,
            tool_call_id=tool_call_id or "",
            data=data,
            created_at=now,
            completed_at=now if state == PartState.DONE else None,
        )
        if type_ == PartType.TOOL_CALL and not part.tool_call_id:
            part.tool_call_id = f"call_{part.wire_id}"
            MessagePart.objects.filter(pk=part.pk).update(tool_call_id=part.tool_call_id)
        w.append(wire.PART_STARTED, {"message_id": message_id, "part": wire.part_data(part)})
    return part


def end_part(part_pk: int) -> int | None:
    """Mark a streamed text or reasoning part done (``part.ended``), writing its text
    once; None if it was already."""
    part = MessagePart.objects.get(pk=part_pk)
    with session_write(part.session_id) as w:
        _require_streaming(w, part.message_id)
        part = MessagePart.objects.select_related("message").get(pk=part_pk)
        if part.state != PartState.STREAMING:
            return None
        text = streaming_text(part.message, part_id=part.wire_id).part(part)
        MessagePart.objects.filter(pk=part_pk).update(
            state=PartState.DONE, text=text, completed_at=timezone.now()
        )
        return w.append(
            wire.PART_ENDED,
            {"message_id": part.message_id, "part_id": part.wire_id, "state": PartState.DONE},
        )


def cut_part(part_pk: int) -> int | None:
    """End a text part that an interrupted attempt left open and the next attempt
    restarts: ``cancelled``, its text taken out of the message's content (the restart
    says it again), with a ``part.ended`` event that says so (``"cut": true``). None if
    it was no longer open."""
    part = MessagePart.objects.select_related("message").get(pk=part_pk)
    with session_write(part.session_id) as w:
        _require_streaming(w, part.message_id)
        part.refresh_from_db(fields=["state", "text"])  # under the session's lock
        if part.state != PartState.STREAMING:
            return None
        # Its text, so far only in its deltas, is written once (see service/text.py); the
        # reply's content leaves it out from the event below on.
        text = streaming_text(part.message, part_id=part.wire_id).part(part)
        MessagePart.objects.filter(pk=part_pk).update(
            state=PartState.CANCELLED, text=text, completed_at=timezone.now()
        )
        return w.append(
            wire.PART_ENDED,
            {
                "message_id": part.message_id,
                "part_id": part.wire_id,
                "state": PartState.CANCELLED,
                "cut": True,
            },
        )


def _locked_tool(w: SessionWrite, part_pk: int) -> MessagePart:
    part = MessagePart.objects.select_related("decided_by").get(pk=part_pk)
    if part.type != PartType.TOOL_CALL or part.session_id != w.session_id:
        raise InvalidInput("part", "is not a tool call of this session")
    return part


def tool_updated(w: SessionWrite, part: MessagePart) -> int:
    """Append the ``tool.updated`` event that carries a tool call's new state."""
    return w.append(
        wire.TOOL_UPDATED,
        {"message_id": part.message_id, "part_id": part.wire_id, **wire.tool_data(part)},
    )


def tool_input_ready(
    part_pk: int,
    tool_input: Any,
    *,
    approvers: str = "",
    expires_at: datetime | None = None,
    error: str = "",
) -> MessagePart:
    """The call's input is complete: it runs (``running``), waits for an approval
    (``awaiting-approval``, when ``approvers`` is set) or failed at once (``error``: an
    unknown tool, an input that breaks its schema)."""
    part = MessagePart.objects.get(pk=part_pk)
    with session_write(part.session_id) as w:
        _require_streaming(w, part.message_id)
        part = _locked_tool(w, part_pk)
        if part.state != PartState.INPUT_STREAMING:
            return part
        message = Message.objects.only("pk", "session_id", "seq").get(pk=part.message_id)
        part.text = streaming_text(message, part_id=part.wire_id).part(part)
        part.input = tool_input
        if error:
            part.state, part.error = PartState.ERROR, error[:MAX_ERROR_CHARS]
            part.completed_at = timezone.now()
        elif approvers:
            part.state, part.approvers = PartState.AWAITING_APPROVAL, approvers
            part.approval_expires_at = expires_at
        else:
            part.state = PartState.RUNNING
        part.save(
            update_fields=[
                "text",
                "input",
                "state",
                "error",
                "approvers",
                "approval_expires_at",
                "completed_at",
            ]
        )
        tool_updated(w, part)
    return part


def start_tool(part_pk: int) -> bool:
    """Move an approved call to ``running``, committed before it executes: a call found
    ``running`` later (after a crash) is never executed again. False when it cannot run
    (answered otherwise, cancelled)."""
    part = MessagePart.objects.get(pk=part_pk)
    with session_write(part.session_id) as w:
        _require_streaming(w, part.message_id)
        part = _locked_tool(w, part_pk)
        if part.state == PartState.RUNNING:
            return True
        if part.state != PartState.APPROVED:
            return False
        part.state = PartState.RUNNING
        part.save(update_fields=["state"])
        tool_updated(w, part)
    return True


def finish_tool(part_pk: int, *, output: Any = None, error: str | None = None) -> MessagePart:
    """A running call's outcome: its output (``done``) or its error (``error``)."""
    part = MessagePart.objects.get(pk=part_pk)
    with session_write(part.session_id) as w:
        _require_streaming(w, part.message_id)
        part = _locked_tool(w, part_pk)
        if part.state in TOOL_FINAL:
            return part  # a retry of an outcome that was committed
        if part.state != PartState.RUNNING:
            raise MessageFinished(f"tool call {part.wire_id} is {part.state}, not running")
        if error is not None:
            part.state, part.error = PartState.ERROR, (error or "the tool failed")[:MAX_ERROR_CHARS]
        else:
            part.state, part.output = PartState.DONE, output
        part.completed_at = timezone.now()
        part.save(update_fields=["state", "error", "output", "completed_at"])
        tool_updated(w, part)
    return part


def reply_parts(message_id: int) -> list[MessagePart]:
    """The parts of a reply, in order."""
    return list(
        MessagePart.objects.filter(message_id=message_id)
        .select_related("decided_by")
        .order_by("index")
    )


def part_length(part_pk: int) -> int | None:
    """How many characters a part holds (a retried delta's check that it was committed)."""
    part = MessagePart.objects.select_related("message").filter(pk=part_pk).first()
    if part is None:
        return None
    return len(streaming_text(part.message, part_id=part.wire_id).part(part))


def stop_parts(w: SessionWrite, streamed: dict[int, StreamedText], reason: str) -> None:
    """When replies end: their streamed parts end with the text their deltas made
    (``streamed``, per message id), and their open tool calls are cancelled (a pending
    approval can no longer be answered)."""
    message_ids = list(streamed)
    if not message_ids:
        return
    now = timezone.now()
    for part in MessagePart.objects.filter(message_id__in=message_ids, state=PartState.STREAMING):
        part.text = streamed[part.message_id].part(part)
        part.state, part.completed_at = PartState.DONE, now
        part.save(update_fields=["text", "state", "completed_at"])
    open_calls = list(
        MessagePart.objects.filter(message_id__in=message_ids, state__in=TOOL_OPEN).order_by(
            "message_id", "index"
        )
    )
    for part in open_calls:
        if part.state == PartState.INPUT_STREAMING:
            part.text = streamed[part.message_id].part(part)
        part.state, part.completed_at = PartState.CANCELLED, now
        part.error = f"cancelled: {reason}"[:MAX_REASON_CHARS]
        if part.approvers and not part.decision:
            part.decision, part.decided_at = "cancelled", now
        part.save(
            update_fields=["text", "state", "completed_at", "error", "decision", "decided_at"]
        )
        tool_updated(w, part)

"""Event types of the session log and the payload shapes they carry.

The wire form of an event is ``{"type": ..., "seq": ..., "at": ..., "data": {...}}``
(see docs/protocol.md).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db.models import Prefetch

from durable_sessions.models import (
    DurableSession,
    Event,
    Message,
    MessagePart,
    Participant,
    PartState,
    PartType,
    part_wire_id,
)

SESSION_CREATED = "session.created"
SESSION_CLOSED = "session.closed"
SESSION_RATED = "session.rated"
PARTICIPANT_JOINED = "participant.joined"
MESSAGE_CREATED = "message.created"
MESSAGE_DELTA = "message.delta"
MESSAGE_COMPLETED = "message.completed"
MESSAGE_CANCELLED = "message.cancelled"
MESSAGE_FAILED = "message.failed"
CONTROL_CHANGED = "control.changed"
# Typed parts of a reply: a part starts, grows by deltas (text parts by message.delta,
# reasoning and tool input by part.delta), ends; a tool call changes state.
PART_STARTED = "part.started"
PART_DELTA = "part.delta"
PART_ENDED = "part.ended"
TOOL_UPDATED = "tool.updated"
# A finished reply whose deltas and part events were compacted: the message whole, at the
# seq of the last event it replaces; ``from_seq`` is the first (the seqs between are gone).
MESSAGE_SNAPSHOT = "message.snapshot"
# A run lost its worker (a crash, or a hand-back while the worker stops): another worker
# continues it; clients show that the assistant is reconnecting.
RUN_RETRYING = "run.retrying"
# A running run read steering messages at a step boundary (see service/steering.py).
RUN_STEERED = "run.steered"
# The shown branch of the conversation changed (an edit, a regeneration, a switch).
BRANCH_SWITCHED = "branch.switched"

ALL_TYPES = frozenset(
    {
        SESSION_CREATED,
        SESSION_CLOSED,
        SESSION_RATED,
        PARTICIPANT_JOINED,
        MESSAGE_CREATED,
        MESSAGE_DELTA,
        MESSAGE_COMPLETED,
        MESSAGE_CANCELLED,
        MESSAGE_FAILED,
        CONTROL_CHANGED,
        PART_STARTED,
        PART_DELTA,
        PART_ENDED,
        TOOL_UPDATED,
        MESSAGE_SNAPSHOT,
        RUN_RETRYING,
        RUN_STEERED,
        BRANCH_SWITCHED,
    }
)


def iso(value: datetime | None) -> str | None:
    # Always with microseconds, as the database writes them in a replay (read_wire).
    return value.isoformat(timespec="microseconds").replace("+00:00", "Z") if value else None


def dumps(frame: dict[str, Any]) -> str:
    """A frame's wire text: compact, UTF-8 left as is."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def participant_data(participant: Participant) -> dict[str, Any]:
    return {
        "id": participant.pk,
        "kind": participant.kind,
        "display_name": participant.display_name,
        "user_id": participant.user_id,
    }


def part_data(part: MessagePart) -> dict[str, Any]:
    """A part as clients see it; only the fields of its type."""
    data: dict[str, Any] = {
        "id": part.wire_id,
        "index": part.index,
        "step": part.step,
        "type": part.type,
        "state": part.state,
    }
    if part.type in (PartType.TEXT, PartType.REASONING):
        data["text"] = part.text
    elif part.type == PartType.TOOL_CALL:
        data.update(tool_data(part))
    else:
        data.update(part.data or {})
    return data


def tool_data(part: MessagePart) -> dict[str, Any]:
    """The tool-call fields of a part (also the payload of ``tool.updated``)."""
    data: dict[str, Any] = {
        "tool_name": part.tool_name,
        "tool_call_id": part.tool_call_id,
        "state": part.state,
        "input_text": part.text,
        "input": part.input,
        "output": part.output,
        "error": part.error or None,
        "approval": approval_data(part),
    }
    return data


def approval_data(part: MessagePart) -> dict[str, Any] | None:
    """A tool call's approval request and its answer; None when it needs none."""
    if not part.approvers:
        return None
    decided = bool(part.decision)
    return {
        "id": part.wire_id,
        "approvers": part.approvers,
        "expires_at": iso(part.approval_expires_at),
        "pending": part.state == PartState.AWAITING_APPROVAL,
        # None while pending; "expired" and "cancelled" count as not approved.
        "approved": (part.decision == "approved") if decided else None,
        "decision": part.decision or None,
        "reason": part.decision_reason or None,
        "decided_by": (
            {"kind": part.decided_by.kind, "display_name": part.decided_by.display_name}
            if part.decided_by_id is not None and part.decided_by is not None
            else None
        ),
        "decided_at": iso(part.decided_at),
    }


def implicit_parts(message: Message) -> list[dict[str, Any]]:
    """The parts of a message stored without part rows: its content as one text part."""
    if not message.content:
        return []
    state = PartState.STREAMING if message.state == "streaming" else PartState.DONE
    return [
        {
            "id": part_wire_id(message.pk, 0),
            "index": 0,
            "step": 0,
            "type": PartType.TEXT,
            "state": state,
            "text": message.content,
        }
    ]


def parts_prefetch() -> Prefetch:
    """Prefetch of messages' parts in order (what :func:`message_data` shows)."""
    return Prefetch(
        "parts", queryset=MessagePart.objects.select_related("decided_by").order_by("index")
    )


def message_parts(message: Message) -> list[dict[str, Any]]:
    """The message's parts: its part rows when prefetched or given, else its content."""
    rows = getattr(message, "_prefetched_objects_cache", {}).get("parts")
    if rows:
        return [part_data(p) for p in rows]
    return implicit_parts(message)


def message_data(message: Message) -> dict[str, Any]:
    return {
        "id": message.pk,
        "role": message.role,
        "author": {
            "id": message.author_id,
            "kind": message.author.kind,
            "display_name": message.author.display_name,
        },
        "content": message.content,
        "parts": message_parts(message),
        "state": message.state,
        "client_id": message.client_id,
        "seq": message.seq,
        "created_at": iso(message.created_at),
        "completed_at": iso(message.completed_at),
        # Sent while the agent was busy: how it was taken (queue, steer or interrupt).
        "mode": message.send_mode or None,
        # Branches: the first version of its sibling group (null on firsts), and whether it
        # is on the shown branch.
        "version_of": message.version_of_id,
        "active": message.hidden_under_id is None,
    }


def session_data(session: DurableSession) -> dict[str, Any]:
    return {
        "id": str(session.id),
        "title": session.title,
        "control": session.control,
        "status": session.status,
        "assigned_operator_id": session.assigned_operator_id,
        "last_seq": session.last_seq,
        "created_at": iso(session.created_at),
        "closed_at": iso(session.closed_at),
        "metadata": session.metadata,
    }


def rating_data(rating: Any) -> dict[str, Any]:
    """A session's rating (CSAT) as the API and the log carry it."""
    return {
        "score": rating.score,
        "comment": rating.comment,
        "seq": rating.seq,
        "created_at": iso(rating.created_at),
    }


def frame(seq: int, type_: str, payload: dict[str, Any], created_at: datetime) -> dict[str, Any]:
    """The frame a client receives for one log event."""
    return {"type": type_, "seq": seq, "at": iso(created_at), "data": payload}


def event_wire(event: Event) -> dict[str, Any]:
    return frame(event.seq, event.type, event.payload, event.created_at)

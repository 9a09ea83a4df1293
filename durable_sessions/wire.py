"""Event types of the session log and the payload shapes they carry.

The wire form of an event is ``{"type": ..., "seq": ..., "at": ..., "data": {...}}``
(see docs/protocol.md).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from durable_sessions.models import DurableSession, Event, Message, Participant

SESSION_CREATED = "session.created"
SESSION_CLOSED = "session.closed"
PARTICIPANT_JOINED = "participant.joined"
MESSAGE_CREATED = "message.created"
MESSAGE_DELTA = "message.delta"
MESSAGE_COMPLETED = "message.completed"
MESSAGE_CANCELLED = "message.cancelled"
MESSAGE_FAILED = "message.failed"
CONTROL_CHANGED = "control.changed"

ALL_TYPES = frozenset(
    {
        SESSION_CREATED,
        SESSION_CLOSED,
        PARTICIPANT_JOINED,
        MESSAGE_CREATED,
        MESSAGE_DELTA,
        MESSAGE_COMPLETED,
        MESSAGE_CANCELLED,
        MESSAGE_FAILED,
        CONTROL_CHANGED,
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
        "state": message.state,
        "client_id": message.client_id,
        "seq": message.seq,
        "created_at": iso(message.created_at),
        "completed_at": iso(message.completed_at),
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


def frame(seq: int, type_: str, payload: dict[str, Any], created_at: datetime) -> dict[str, Any]:
    """The frame a client receives for one log event."""
    return {"type": type_, "seq": seq, "at": iso(created_at), "data": payload}


def event_wire(event: Event) -> dict[str, Any]:
    return frame(event.seq, event.type, event.payload, event.created_at)

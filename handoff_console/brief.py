"""The handoff brief pinned above a session: why it came to a human, and what the AI said."""

from __future__ import annotations

import uuid
from typing import Any

from durable_sessions import wire
from durable_sessions.models import AgentRun, Control, Event, Message, Role, RunStatus


def latest_handoff(session_id: uuid.UUID | str) -> dict[str, Any] | None:
    """The latest time the session was queued for a human: reason, summary, who and when."""
    event = (
        Event.objects.filter(
            session_id=session_id, type=wire.CONTROL_CHANGED, payload__control=Control.QUEUED
        )
        .order_by("-seq")
        .first()
    )
    if event is None:
        return None
    by = event.payload.get("by") or {}
    return {
        "reason": event.payload.get("reason", ""),
        "summary": event.payload.get("summary", ""),
        "by": by.get("display_name") or "",
        "at": wire.iso(event.created_at),
        "seq": event.seq,
    }


def ai_said_last(session_id: uuid.UUID | str) -> dict[str, Any] | None:
    """The AI's latest reply with any text (possibly cancelled or failed part-way)."""
    message = (
        Message.objects.filter(session_id=session_id, role=Role.ASSISTANT)
        .exclude(content="")
        .order_by("-seq")
        .only("pk", "content", "state", "created_at", "seq")
        .first()
    )
    if message is None:
        return None
    return {
        "id": message.pk,
        "content": message.content,
        "state": message.state,
        "at": wire.iso(message.created_at),
    }


def agent_error(session_id: uuid.UUID | str) -> str:
    """Why the agent's latest run failed, in its own words (an exception's text, which may
    name internal hosts): for operators only; customers read a generic message."""
    run = (
        AgentRun.objects.filter(session_id=session_id)
        .order_by("-id")
        .only("status", "error")
        .first()
    )
    return run.error if run is not None and run.status == RunStatus.FAILED else ""


def brief(session_id: uuid.UUID | str) -> dict[str, Any]:
    """Everything the brief panel shows."""
    return {
        "handoff": latest_handoff(session_id),
        "ai_last": ai_said_last(session_id),
        "agent_error": agent_error(session_id),
    }

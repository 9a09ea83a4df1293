"""The handoff brief of a session: why a human has it now, a summary, what the AI said last.

"Why a human" is the *current* reason: the latest control change that gave the session to
the queue or to an operator (a handoff, a take over, a transfer), not the first one. The
summary is the agent's, from a handoff since the session last left the AI; when there is
none (the customer pressed "Talk to a human", or an operator took over unasked), the brief
quotes the customer's latest messages instead, so an operator never starts from "(none)".
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Q
from django.utils.text import Truncator

from durable_sessions import wire
from durable_sessions.models import (
    AgentRun,
    Control,
    Event,
    Message,
    MessageState,
    Role,
    RunStatus,
)
from durable_sessions.service.text import current_content

# Control changes read back to find the summary of the current stretch with a human.
HISTORY = 50
CUSTOMER_MESSAGES = 3
QUOTE_CHARS = 300


def _control_changes(session_id: uuid.UUID | str) -> list[Event]:
    return list(
        Event.objects.filter(session_id=session_id, type=wire.CONTROL_CHANGED)
        .order_by("-seq")
        .only("seq", "payload", "created_at")[:HISTORY]
    )


def current_handoff(session_id: uuid.UUID | str) -> dict[str, Any] | None:
    """Why the queue or an operator has the session now; ``None`` while the AI has it."""
    changes = _control_changes(session_id)
    if not changes or changes[0].payload.get("control") == Control.AI:
        return None
    latest = changes[0]
    summary = ""
    for event in changes:  # newest first, back to the latest return to the AI
        if event.payload.get("control") == Control.AI:
            break
        summary = summary or event.payload.get("summary", "")
    by = latest.payload.get("by") or {}
    return {
        "control": latest.payload.get("control"),
        "reason": latest.payload.get("reason", ""),
        "summary": summary,
        "by": by.get("display_name") or "",
        "by_kind": by.get("kind") or "",
        "at": wire.iso(latest.created_at),
        "seq": latest.seq,
    }


def customer_said_last(session_id: uuid.UUID | str) -> list[dict[str, Any]]:
    """The customer's latest messages, oldest first, each cut to a readable length."""
    messages = (
        Message.objects.filter(session_id=session_id, role=Role.USER)
        .order_by("-seq")
        .only("pk", "content", "created_at")[:CUSTOMER_MESSAGES]
    )
    return [
        {"id": m.pk, "text": Truncator(m.content).chars(QUOTE_CHARS), "at": wire.iso(m.created_at)}
        for m in reversed(list(messages))
    ]


def ai_said_last(session_id: uuid.UUID | str) -> dict[str, Any] | None:
    """The AI's latest reply with any text (possibly cancelled or failed part-way)."""
    message = (
        Message.objects.filter(session_id=session_id, role=Role.ASSISTANT)
        .filter(~Q(content="") | Q(state=MessageState.STREAMING))
        .order_by("-seq")
        .only("pk", "session_id", "content", "state", "created_at", "seq")
        .first()
    )
    content = current_content(message) if message is not None else ""
    if message is None or not content:
        return None
    return {
        "id": message.pk,
        "content": content,
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
    handoff = current_handoff(session_id)
    customer = customer_said_last(session_id)
    return {
        "handoff": handoff,
        # Where the summary comes from: the agent's handoff, else the customer's words.
        "summary_from": "agent" if handoff and handoff["summary"] else "customer",
        "customer_last": customer,
        "ai_last": ai_said_last(session_id),
        "agent_error": agent_error(session_id),
    }

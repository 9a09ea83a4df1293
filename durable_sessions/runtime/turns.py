"""What an agent answers from: the session's history and context, read for one run."""

from __future__ import annotations

import uuid

from django.db.models import Exists, OuterRef, Q

from durable_sessions import wire
from durable_sessions.agents import HistoryMessage, Part, Turn
from durable_sessions.app_settings import ds_settings
from durable_sessions.models import (
    Control,
    DurableSession,
    Event,
    Message,
    MessagePart,
    MessageState,
    PartType,
    Role,
)
from durable_sessions.runtime import steering
from durable_sessions.service.steering import agent_steers
from durable_sessions.service.text import with_part_text, with_streaming_text


def agent_part(part: MessagePart) -> Part:
    """A stored part as the agent reads it."""
    return Part(
        type=part.type,
        text=part.text if part.type != PartType.TOOL_CALL else "",
        state=part.state,
        tool_name=part.tool_name,
        tool_call_id=part.tool_call_id,
        input=part.input,
        output=part.output,
        error=part.error,
        data=part.data,
        step=part.step,
    )


def build_turn(
    session_id: uuid.UUID, reply_id: int | None = None, step: int = 0, run_id: int | None = None
) -> Turn:
    """The history and context an agent answers from; ``reply_id`` is the reply this run
    is writing (its parts so far are :attr:`Turn.reply`, not history), ``run_id`` the run
    (the steering messages sent into it are :attr:`Turn.steered`, not history)."""
    session = DurableSession.objects.get(pk=session_id)
    has_parts = Exists(MessagePart.objects.filter(message_id=OuterRef("pk")))
    # The shown branch only: edited and regenerated versions off it are not history.
    messages = Message.objects.filter(session_id=session_id, hidden_under__isnull=True)
    if run_id is not None:
        messages = messages.exclude(steer_run_id=run_id)
    recent = list(
        messages.filter(~Q(content="") | Q(has_parts) | Q(state=MessageState.STREAMING))
        .exclude(pk=reply_id)
        .select_related("author")
        .prefetch_related("parts")
        .order_by("-seq")[: ds_settings.HISTORY_LIMIT]
    )
    with_streaming_text(recent)
    history = [
        HistoryMessage(
            m.role,
            m.content,
            m.author.display_name,
            m.state,
            tuple(agent_part(p) for p in m.parts.all()),
        )
        for m in reversed(recent)
    ]
    reply_parts = (
        list(MessagePart.objects.filter(message_id=reply_id).order_by("index"))
        if reply_id is not None
        else []
    )
    with_part_text(reply_parts)
    reply = tuple(agent_part(p) for p in reply_parts)
    last_control = (
        Event.objects.filter(session_id=session_id, type=wire.CONTROL_CHANGED)
        .order_by("-seq")
        .values_list("seq", "payload")
        .first()
    )
    # Handed back by a human, and the AI has not answered since: its first turn back.
    handed_back = bool(
        last_control
        and last_control[1]["control"] == Control.AI
        and last_control[1]["previous"] != Control.AI
        and not Message.objects.filter(
            session_id=session_id, role=Role.ASSISTANT, seq__gt=last_control[0]
        ).exists()
    )
    # Only a steering agent's runs have steering messages (see service/steering.py).
    steers = run_id is not None and agent_steers()
    steered = steering.read_so_far(run_id) if steers else ()
    return Turn(str(session_id), history, dict(session.metadata), handed_back, reply, step, steered)

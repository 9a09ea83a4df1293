"""What an agent answers from: the session's history and context, read for one run."""

from __future__ import annotations

import uuid

from durable_sessions import wire
from durable_sessions.agents import HistoryMessage, Turn
from durable_sessions.app_settings import ds_settings
from durable_sessions.models import Control, DurableSession, Event, Message, Role


def build_turn(session_id: uuid.UUID) -> Turn:
    """The history and context an agent answers from."""
    session = DurableSession.objects.get(pk=session_id)
    recent = list(
        Message.objects.filter(session_id=session_id)
        .exclude(content="")
        .select_related("author")
        .order_by("-seq")[: ds_settings.HISTORY_LIMIT]
    )
    history = [
        HistoryMessage(m.role, m.content, m.author.display_name, m.state) for m in reversed(recent)
    ]
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
    return Turn(str(session_id), history, dict(session.metadata), handed_back)

"""Messages: customer and operator posts, and the AI's streaming replies."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from durable_sessions import wire
from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.publish import (
    announce_run_on_commit,
    ephemeral_on_commit,
)
from durable_sessions.errors import (
    ClientIdConflict,
    InvalidInput,
    MessageFinished,
    NotInControl,
    ReplyInProgress,
)
from durable_sessions.models import (
    Control,
    Message,
    MessageState,
    Participant,
    ParticipantKind,
    Role,
)
from durable_sessions.service import runs
from durable_sessions.service.log import (
    Locked,
    clean_client_id,
    clean_text,
    emit,
    lock,
    require_open,
)
from durable_sessions.service.sessions import participant_for, system_participant

ROLE_BY_KIND = {
    ParticipantKind.CUSTOMER: Role.USER,
    ParticipantKind.AGENT: Role.ASSISTANT,
    ParticipantKind.OPERATOR: Role.OPERATOR,
    ParticipantKind.SYSTEM: Role.SYSTEM,
}


@dataclass(frozen=True)
class PostResult:
    """The stored message, the seq of its ``message.created`` event, and whether it was a retry."""

    message: Message
    seq: int
    duplicate: bool


@transaction.atomic
def post_message(
    session_id: uuid.UUID | str,
    *,
    author: Participant,
    content: Any,
    client_id: Any = None,
) -> PostResult:
    """Store a complete message by a customer or operator.

    A retry with the same ``client_id`` returns the original and stores nothing;
    the same id with different content raises :class:`ClientIdConflict`.
    """
    content = clean_text("content", content, limit=ds_settings.MAX_MESSAGE_CHARS)
    client_id = clean_client_id(client_id)
    if author.kind not in (ParticipantKind.CUSTOMER, ParticipantKind.OPERATOR):
        raise InvalidInput("author", "only customers and operators post complete messages")
    locked = lock(session_id, 1)
    if author.session_id != locked.session_id:
        raise InvalidInput("author", "is not a participant of this session")
    if client_id is not None:
        # The row lock serialises writers of this session, so this check cannot race.
        existing = (
            Message.objects.select_related("author")
            .filter(session_id=locked.session_id, client_id=client_id)
            .first()
        )
        if existing is not None:
            if existing.content != content or existing.author_id != author.pk:
                raise ClientIdConflict(
                    f"client_id {client_id!r} was already used for a different message"
                )
            emit(locked, [])
            return PostResult(existing, existing.seq, True)
    require_open(locked)
    now = timezone.now()
    message = Message.objects.create(
        session_id=locked.session_id,
        author=author,
        role=ROLE_BY_KIND[author.kind],
        content=content,
        state=MessageState.COMPLETE,
        client_id=client_id,
        seq=locked.first_seq,
        created_at=now,
        completed_at=now,
    )
    emit(locked, [(wire.MESSAGE_CREATED, {"message": wire.message_data(message)})])
    if author.kind == ParticipantKind.CUSTOMER and locked.control == Control.AI:
        # Committed with the message: a crash between the two cannot lose the run.
        run = runs.create_pending(locked.session_id, message)
        if run is not None:
            announce_run_on_commit(run.pk)
            ephemeral_on_commit(locked.session_id, agent_status_frame("thinking", run.pk))
    return PostResult(message, message.seq, False)


@transaction.atomic
def post_system_message(session_id: uuid.UUID | str, content: str) -> Message:
    """A notice every participant sees (e.g. "An operator joined")."""
    content = clean_text("content", content, limit=ds_settings.MAX_MESSAGE_CHARS)
    locked = lock(session_id, 1)
    now = timezone.now()
    message = Message.objects.create(
        session_id=locked.session_id,
        author=system_participant(locked.session_id),
        role=Role.SYSTEM,
        content=content,
        seq=locked.first_seq,
        created_at=now,
        completed_at=now,
    )
    emit(locked, [(wire.MESSAGE_CREATED, {"message": wire.message_data(message)})])
    return message


@transaction.atomic
def start_assistant_message(session_id: uuid.UUID | str) -> Message:
    """Open a streaming assistant reply; only while the AI has control of an open session."""
    locked = lock(session_id, 1)
    require_open(locked)
    if locked.control != Control.AI:
        raise NotInControl(f"the AI does not control session {locked.session_id}")
    if Message.objects.filter(
        session_id=locked.session_id, role=Role.ASSISTANT, state=MessageState.STREAMING
    ).exists():
        raise ReplyInProgress("an assistant reply is already streaming in this session")
    message = Message.objects.create(
        session_id=locked.session_id,
        author=participant_for(locked.session_id, ParticipantKind.AGENT),
        role=Role.ASSISTANT,
        content="",
        state=MessageState.STREAMING,
        seq=locked.first_seq,
    )
    emit(locked, [(wire.MESSAGE_CREATED, {"message": wire.message_data(message)})])
    return message


def lock_streaming(message: Message | int, reserve: int, *fields: str) -> tuple[Locked, Message]:
    message_id = message.pk if isinstance(message, Message) else message
    session_id = Message.objects.values_list("session_id", flat=True).filter(pk=message_id).first()
    if session_id is None:
        raise MessageFinished(f"message {message_id} does not exist")
    locked = lock(session_id, reserve)
    # Read under the session lock: every write to a message holds it too.
    current = Message.objects.only("pk", "state", *fields).get(pk=message_id)
    if current.state != MessageState.STREAMING:
        raise MessageFinished(f"message {message_id} is already {current.state}")
    return locked, current


def require_ai(locked: Locked) -> None:
    require_open(locked)
    if locked.control != Control.AI:
        raise NotInControl(f"the AI no longer controls session {locked.session_id}")


@transaction.atomic
def append_assistant_text(message: Message | int, text: str) -> int:
    """Append a (coalesced) delta to a streaming reply; returns its seq.

    Raises :class:`NotInControl` once a human has taken over and
    :class:`MessageFinished` once the reply was cancelled: the AI never writes again.
    """
    if not isinstance(text, str) or not text:
        raise InvalidInput("text", "must be a non-empty string")
    locked, current = lock_streaming(message, 1)
    require_ai(locked)
    # Concatenate in the database: a long reply is never re-sent whole per delta.
    Message.objects.filter(pk=current.pk).update(content=Concat(F("content"), Value(text)))
    (event,) = emit(locked, [(wire.MESSAGE_DELTA, {"message_id": current.pk, "text": text})])
    return event.seq


@transaction.atomic
def finish_assistant_message(message: Message | int) -> int:
    """Mark a streaming reply complete; returns the seq of ``message.completed``."""
    locked, current = lock_streaming(message, 1, "content")
    require_ai(locked)
    return end_message(locked, current, MessageState.COMPLETE, {})


@transaction.atomic
def fail_assistant_message(message: Message | int, error: str) -> int:
    """Mark a streaming reply failed (agent error or crash), keeping its partial text."""
    locked, current = lock_streaming(message, 1, "content")
    return end_message(locked, current, MessageState.FAILED, {"error": str(error)[:500]})


END_EVENT = {
    MessageState.COMPLETE: wire.MESSAGE_COMPLETED,
    MessageState.CANCELLED: wire.MESSAGE_CANCELLED,
    MessageState.FAILED: wire.MESSAGE_FAILED,
}


def end_message(locked: Locked, message: Message, state: str, extra: dict[str, Any]) -> int:
    now = timezone.now()
    Message.objects.filter(pk=message.pk).update(state=state, completed_at=now)
    payload = {"message_id": message.pk, "state": state, "length": len(message.content), **extra}
    (event,) = emit(locked, [(END_EVENT[state], payload)])
    return event.seq


def agent_status_frame(status: str, run_id: int | None = None) -> dict[str, Any]:
    """The ephemeral frame clients get when the agent's status changes."""
    return {"type": "agent.status", "status": status, "run_id": run_id}


def stop_ai(locked: Locked, reason: str) -> list[tuple[str, dict[str, Any]]]:
    """Cancel the AI's runs and streaming replies (keeping their text); return the events."""
    cancelled_runs = runs.cancel_active(locked.session_id, reason)
    if cancelled_runs:
        ephemeral_on_commit(locked.session_id, agent_status_frame("idle", cancelled_runs[-1]))
    return end_streaming(locked, MessageState.CANCELLED, reason=reason)


def end_streaming(locked: Locked, state: str, **extra: Any) -> list[tuple[str, dict[str, Any]]]:
    """End every streaming assistant reply of the session as ``state`` (cancelled or
    failed), keeping its text; return the events that say so."""
    streaming = list(
        Message.objects.filter(
            session_id=locked.session_id, role=Role.ASSISTANT, state=MessageState.STREAMING
        ).only("pk", "content")
    )
    if not streaming:
        return []
    Message.objects.filter(pk__in=[m.pk for m in streaming]).update(
        state=state, completed_at=timezone.now()
    )
    return [
        (
            END_EVENT[state],
            {"message_id": m.pk, "state": state, "length": len(m.content), **extra},
        )
        for m in streaming
    ]


@transaction.atomic
def cancel_reply(session_id: uuid.UUID | str, *, reason: str = "user") -> list[int]:
    """Stop the AI's current reply (or the run still thinking), keeping its partial text.

    Returns the seqs written (none when the agent had not started writing)."""
    locked = lock(session_id, 1)
    return [e.seq for e in emit(locked, stop_ai(locked, reason))]

"""Messages: customer and operator posts, notices, and the AI's streaming replies."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from durable_sessions import wire
from durable_sessions.app_settings import ds_settings
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
from durable_sessions.service import parts, runs, steering
from durable_sessions.service.runs import agent_status_frame
from durable_sessions.service.sessions import system_participant
from durable_sessions.service.text import StreamedText, streaming_text
from durable_sessions.service.unit import SessionWrite, session_write
from durable_sessions.service.validation import MAX_REASON_CHARS, clean_client_id, clean_text

ROLE_BY_KIND = {
    ParticipantKind.CUSTOMER: Role.USER,
    ParticipantKind.AGENT: Role.ASSISTANT,
    ParticipantKind.OPERATOR: Role.OPERATOR,
    ParticipantKind.SYSTEM: Role.SYSTEM,
}

END_EVENT = {
    MessageState.COMPLETE: wire.MESSAGE_COMPLETED,
    MessageState.CANCELLED: wire.MESSAGE_CANCELLED,
    MessageState.FAILED: wire.MESSAGE_FAILED,
}


@dataclass(frozen=True)
class PostResult:
    """The stored message, the seq of its ``message.created`` event, and whether it was a
    retry; ``mode`` is how the agent takes it (``queue``, ``steer`` or ``interrupt``)."""

    message: Message
    seq: int
    duplicate: bool

    @property
    def mode(self) -> str:
        return steering.applied(self.message)


def post_message(
    session_id: uuid.UUID | str,
    *,
    author: Participant,
    content: Any,
    client_id: Any = None,
    mode: Any = None,
) -> PostResult:
    """Store a complete message by a customer or operator.

    A retry with the same ``client_id`` returns the original and stores nothing;
    the same id with different content raises :class:`ClientIdConflict`. A customer's
    message to the AI starts a run, committed with it; while the agent is busy, ``mode``
    (``queue``, ``steer`` or ``interrupt``, see :mod:`~durable_sessions.service.steering`)
    says how it is taken. Only a customer's message has a mode.
    """
    content = clean_text("content", content, limit=ds_settings.MAX_MESSAGE_CHARS)
    client_id = clean_client_id(client_id)
    mode = steering.clean_mode(mode)
    if author.kind not in (ParticipantKind.CUSTOMER, ParticipantKind.OPERATOR):
        raise InvalidInput("author", "only customers and operators post complete messages")
    if mode is not None and author.kind != ParticipantKind.CUSTOMER:
        raise InvalidInput("mode", "only a customer's message steers or interrupts the agent")
    with session_write(session_id) as w:
        if author.session_id != w.session_id:
            raise InvalidInput("author", "is not a participant of this session")
        return _post_once(w, author, content, client_id, mode)


def post_customer_message(
    session_id: uuid.UUID | str, content: Any, *, client_id: Any = None, mode: Any = None
) -> PostResult:
    """Store a message from the session's customer (e.g. from a host project's own view,
    after checking that the request may act for them); as :func:`post_message`."""
    content = clean_text("content", content, limit=ds_settings.MAX_MESSAGE_CHARS)
    client_id = clean_client_id(client_id)
    mode = steering.clean_mode(mode)
    with session_write(session_id) as w:
        customer = w.participant(ParticipantKind.CUSTOMER)
        assert customer is not None  # every session is made with its customer
        return _post_once(w, customer, content, client_id, mode)


def _post_once(
    w: SessionWrite,
    author: Participant,
    content: str,
    client_id: str | None,
    mode: str | None = None,
) -> PostResult:
    """The post, or the message a retry with the same ``client_id`` already stored."""
    retry = find_retry(w, client_id, author=author, content=content)
    return retry if retry is not None else add_post(w, author, content, client_id, mode)


def find_retry(
    w: SessionWrite, client_id: str | None, *, author: Participant, content: str
) -> PostResult | None:
    """The message a retry with ``client_id`` already stored, if any.

    The session lock serialises its writers, so this check cannot race."""
    if client_id is None:
        return None
    existing = (
        Message.objects.select_related("author")
        .filter(session_id=w.session_id, client_id=client_id)
        .first()
    )
    if existing is None:
        return None
    if existing.content != content or existing.author_id != author.pk:
        raise ClientIdConflict(f"client_id {client_id!r} was already used for a different message")
    return PostResult(existing, existing.seq, True)


def add_post(
    w: SessionWrite,
    author: Participant,
    content: str,
    client_id: str | None,
    mode: str | None = None,
) -> PostResult:
    w.require_open()
    now = timezone.now()
    to_ai = author.kind == ParticipantKind.CUSTOMER and w.control == Control.AI
    send_mode, steers = steering.choose(w, mode) if to_ai else ("", None)
    if send_mode == steering.INTERRUPT:
        # The current answer ends first (keeping its text): the message follows it.
        stop_ai(w, steering.INTERRUPTED)
    message = Message(
        author=author,
        role=ROLE_BY_KIND[author.kind],
        content=content,
        state=MessageState.COMPLETE,
        client_id=client_id,
        created_at=now,
        completed_at=now,
        send_mode=send_mode,
        steer_run_id=steers,
    )
    seq = w.add_message(message)
    if to_ai and steers is None:
        runs.start_pending(w, message)
    return PostResult(message, seq, False)


def post_system_message(session_id: uuid.UUID | str, content: str) -> Message:
    """A notice every participant sees (e.g. "An operator joined")."""
    with session_write(session_id) as w:
        return add_notice(w, content)


def add_notice(w: SessionWrite, content: str) -> Message:
    content = clean_text("content", content, limit=ds_settings.MAX_MESSAGE_CHARS)
    now = timezone.now()
    message = Message(
        author=system_participant(w),
        role=Role.SYSTEM,
        content=content,
        created_at=now,
        completed_at=now,
    )
    w.add_message(message)
    return message


def start_assistant_message(session_id: uuid.UUID | str) -> Message:
    """Open a streaming assistant reply; only while the AI has control of an open session."""
    with session_write(session_id) as w:
        require_ai(w)
        if Message.objects.filter(
            session_id=w.session_id, role=Role.ASSISTANT, state=MessageState.STREAMING
        ).exists():
            raise ReplyInProgress("an assistant reply is already streaming in this session")
        agent = w.participant(ParticipantKind.AGENT)
        message = Message(
            author=agent,
            role=Role.ASSISTANT,
            content="",
            state=MessageState.STREAMING,
            version_of_id=runs.regenerated_group(w.session_id),
        )
        # Which run writes it and which messages it answers: a device follows the answer
        # to its own message even when several devices send at once.
        w.add_message(message, runs.answered_by_running(w.session_id))
    return message


def _streaming(message: Message | int) -> tuple[uuid.UUID, int]:
    message_id = message.pk if isinstance(message, Message) else message
    session_id = Message.objects.values_list("session_id", flat=True).filter(pk=message_id).first()
    if session_id is None:
        raise MessageFinished(f"message {message_id} does not exist")
    return session_id, message_id


def _still_streaming(w: SessionWrite, message_id: int) -> Message:
    # Read under the session lock: every write to a message holds it too.
    current = Message.objects.only("pk", "session_id", "seq", "state", "content").get(pk=message_id)
    if current.state != MessageState.STREAMING:
        raise MessageFinished(f"message {message_id} is already {current.state}")
    return current


def require_ai(w: SessionWrite) -> None:
    w.require_open()
    if w.control != Control.AI:
        raise NotInControl(f"the AI no longer controls session {w.session_id}")


def finish_assistant_message(message: Message | int) -> int:
    """Mark a streaming reply complete; returns the seq of ``message.completed``."""
    session_id, message_id = _streaming(message)
    with session_write(session_id) as w:
        current = _still_streaming(w, message_id)
        require_ai(w)
        return end_message(w, current, MessageState.COMPLETE, {})


def fail_assistant_message(message: Message | int, error: str) -> int:
    """Mark a streaming reply failed (agent error or crash), keeping its partial text."""
    session_id, message_id = _streaming(message)
    with session_write(session_id) as w:
        current = _still_streaming(w, message_id)
        return end_message(
            w, current, MessageState.FAILED, {"error": str(error)[:MAX_REASON_CHARS]}
        )


def end_message(w: SessionWrite, message: Message, state: str, extra: dict[str, Any]) -> int:
    """End a streaming reply as ``state``: its text, so far only in its deltas, is written
    once (see :mod:`.text`)."""
    streamed = streaming_text(message)
    content = message.content + streamed.content
    Message.objects.filter(pk=message.pk).update(
        state=state, content=content, completed_at=timezone.now()
    )
    parts.stop_parts(w, {message.pk: streamed}, extra.get("error") or state)
    payload = {"message_id": message.pk, "state": state, "length": len(content), **extra}
    return w.append(END_EVENT[state], payload)


def stop_ai(w: SessionWrite, reason: str) -> None:
    """Cancel the AI's runs and streaming replies (keeping their text), as events.

    Only an AI-controlled session has them: every move away from the AI comes here
    first, and neither runs nor replies start without AI control."""
    if w.control != Control.AI:
        return
    run_ids, streaming = runs.active_work(w.session_id)
    if run_ids:
        runs.cancel(run_ids, reason)
        w.ephemeral(agent_status_frame("idle", run_ids[-1]))
    end_streaming(w, streaming, MessageState.CANCELLED, reason=reason)


def end_streaming(w: SessionWrite, streaming: list[int], state: str, **extra: Any) -> None:
    """End the given streaming replies (ids) as ``state``, keeping their text (written
    once from their deltas), with the events that say so."""
    if not streaming:
        return
    now = timezone.now()
    ended: dict[int, StreamedText] = {}
    lengths: dict[int, int] = {}
    for message in Message.objects.filter(pk__in=streaming, state=MessageState.STREAMING).only(
        "pk", "session_id", "seq", "state", "content"
    ):
        ended[message.pk] = streamed = streaming_text(message)
        content = message.content + streamed.content
        lengths[message.pk] = len(content)
        Message.objects.filter(pk=message.pk).update(state=state, content=content, completed_at=now)
    parts.stop_parts(w, ended, str(extra.get("reason") or state))
    for pk in sorted(ended):
        w.append(
            END_EVENT[state], {"message_id": pk, "state": state, "length": lengths[pk], **extra}
        )


def cancel_reply(session_id: uuid.UUID | str, *, reason: str = "user") -> list[int]:
    """Stop the AI's current reply (or the run still thinking), keeping its partial text.

    Returns the seqs written (none when the agent had not started writing)."""
    with session_write(session_id) as w:
        first = w.last_seq + 1
        stop_ai(w, reason)
        return list(range(first, w.last_seq + 1))

"""The session service: the only code that writes sessions, participants, messages and events.

Every call runs in one transaction: it takes the session row with
``UPDATE ... SET last_seq = last_seq + n ... RETURNING`` (a row lock, no table lock),
checks the state it read under that lock, writes, appends its events with the next
``seq`` values and publishes them to the session's group only after commit.
Each function has an async twin named with an ``a`` prefix.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from durable_sessions import events as ev
from durable_sessions import runs
from durable_sessions.adapter import AnyUser, get_adapter
from durable_sessions.app_settings import ds_settings
from durable_sessions.errors import (
    ClientIdConflict,
    Conflict,
    InvalidInput,
    MessageFinished,
    NotInControl,
    ReplyInProgress,
    SessionClosed,
    SessionNotFound,
)
from durable_sessions.models import (
    AgentRun,
    Control,
    DurableSession,
    Event,
    Message,
    MessageState,
    Participant,
    ParticipantKind,
    Role,
    RunStatus,
    Status,
)
from durable_sessions.publish import (
    announce_run_on_commit,
    ephemeral_on_commit,
    make_async,
    publish_on_commit,
)

MAX_CLIENT_ID = 64
_ROLE_BY_KIND = {
    ParticipantKind.CUSTOMER: Role.USER,
    ParticipantKind.AGENT: Role.ASSISTANT,
    ParticipantKind.OPERATOR: Role.OPERATOR,
    ParticipantKind.SYSTEM: Role.SYSTEM,
}


@dataclass
class _Locked:
    """A session row locked by this transaction, with the seq values it reserved."""

    session_id: uuid.UUID
    last_seq: int  # after the reservation
    reserved: int
    control: str
    status: str
    assigned_operator_id: int | None

    @property
    def first_seq(self) -> int:
        return self.last_seq - self.reserved + 1


@dataclass(frozen=True)
class PostResult:
    """The stored message, the seq of its ``message.created`` event, and whether it was a retry."""

    message: Message
    seq: int
    duplicate: bool


def _lock(session_id: uuid.UUID | str, reserve: int) -> _Locked:
    table = connection.ops.quote_name(DurableSession._meta.db_table)
    pk = DurableSession._meta.pk.get_db_prep_value(_as_uuid(session_id), connection)
    # One statement takes the row lock, reserves the seqs and reads the state to check.
    # A writer that only locks (reserve 0) leaves updated_at alone.
    touch, params = (
        (", updated_at = %s", [reserve, timezone.now(), pk]) if reserve else ("", [0, pk])
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_seq = last_seq + %s{touch} WHERE id = %s "
            "RETURNING last_seq, control, status, assigned_operator_id",
            params,
        )
        row = cursor.fetchone()
    if row is None:
        raise SessionNotFound(f"session {session_id} does not exist")
    return _Locked(_as_uuid(session_id), row[0], reserve, row[1], row[2], row[3])


def lock_session(session_id: uuid.UUID | str) -> _Locked:
    """Lock the session row for the rest of the transaction, reserving no seq."""
    return _lock(session_id, 0)


def _emit(locked: _Locked, items: list[tuple[str, dict[str, Any]]]) -> list[Event]:
    """Append ``items`` as the next events of the locked session; publish after commit."""
    if len(items) != locked.reserved:
        base = locked.last_seq - locked.reserved
        changes: dict[str, Any] = {"last_seq": base + len(items)}
        if items:
            changes["updated_at"] = timezone.now()
        DurableSession.objects.filter(pk=locked.session_id).update(**changes)
        locked.last_seq, locked.reserved = base + len(items), len(items)
    if not items:
        return []
    first = locked.first_seq
    rows = [
        Event(session_id=locked.session_id, seq=first + i, type=type_, payload=payload)
        for i, (type_, payload) in enumerate(items)
    ]
    Event.objects.bulk_create(rows)
    publish_on_commit(
        locked.session_id, [ev.wire(e.seq, e.type, e.payload, e.created_at) for e in rows]
    )
    return rows


def _as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise SessionNotFound(f"session {value} does not exist") from None


def _require_open(locked: _Locked) -> None:
    if locked.status != Status.OPEN:
        raise SessionClosed(f"session {locked.session_id} is closed")


def _clean_text(field: str, value: Any, *, limit: int, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if not allow_empty and not value.strip():
        raise InvalidInput(field, "must not be empty")
    if len(value) > limit:
        raise InvalidInput(field, f"is longer than {limit} characters")
    if "\x00" in value:
        raise InvalidInput(field, "must not contain NUL characters")
    return value


def _clean_client_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_CLIENT_ID:
        raise InvalidInput("client_id", f"must be a non-empty string of at most {MAX_CLIENT_ID}")
    if not value.isprintable():
        raise InvalidInput("client_id", "must contain printable characters only")
    return value


# --- sessions and participants ------------------------------------------------------------


@transaction.atomic
def create_session(
    *,
    owner: AnyUser | None = None,
    visitor: str = "",
    title: str = "",
    metadata: dict[str, Any] | None = None,
) -> DurableSession:
    """Create a session owned by ``owner`` (a user) or an anonymous ``visitor`` id."""
    if owner is not None and not owner.is_authenticated:
        owner = None
    if owner is None and not visitor:
        raise InvalidInput("owner", "a session needs a user or an anonymous visitor id")
    title = _clean_text("title", title, limit=200, allow_empty=True)
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidInput("metadata", "must be an object")
    adapter = get_adapter()
    session = DurableSession.objects.create(
        owner=owner,
        owner_visitor="" if owner is not None else visitor,
        title=title,
        metadata=metadata or {},
    )
    people = [
        Participant(
            session=session,
            kind=ParticipantKind.CUSTOMER,
            user=owner,
            display_name=adapter.display_name(owner),
        ),
        Participant(
            session=session,
            kind=ParticipantKind.AGENT,
            display_name=adapter.agent_name(session),
        ),
    ]
    Participant.objects.bulk_create(people)
    locked = _lock(session.id, 1)
    payload = ev.session_data(session)
    payload["last_seq"] = 1
    payload["participants"] = [ev.participant_data(p) for p in people]
    _emit(locked, [(ev.SESSION_CREATED, payload)])
    session.last_seq = 1
    return session


@transaction.atomic
def join_operator(session_id: uuid.UUID | str, user: AnyUser) -> Participant:
    """Add ``user`` as an operator participant (idempotent; re-joins after leaving)."""
    locked = _lock(session_id, 1)
    participant, created = Participant.objects.get_or_create(
        session_id=locked.session_id,
        kind=ParticipantKind.OPERATOR,
        user=user,
        defaults={"display_name": get_adapter().display_name(user)},
    )
    if not created and participant.left_at is None:
        _emit(locked, [])
        return participant
    if participant.left_at is not None:
        participant.left_at = None
        participant.save(update_fields=["left_at"])
    _emit(locked, [(ev.PARTICIPANT_JOINED, {"participant": ev.participant_data(participant)})])
    return participant


def participant_for(session_id: uuid.UUID | str, kind: str) -> Participant:
    return Participant.objects.get(session_id=session_id, kind=kind)


def _system_participant(session_id: uuid.UUID) -> Participant:
    participant, _ = Participant.objects.get_or_create(
        session_id=session_id, kind=ParticipantKind.SYSTEM, defaults={"display_name": "System"}
    )
    return participant


# --- messages ---------------------------------------------------------------------------------


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
    content = _clean_text("content", content, limit=ds_settings.MAX_MESSAGE_CHARS)
    client_id = _clean_client_id(client_id)
    if author.kind not in (ParticipantKind.CUSTOMER, ParticipantKind.OPERATOR):
        raise InvalidInput("author", "only customers and operators post complete messages")
    locked = _lock(session_id, 1)
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
            _emit(locked, [])
            return PostResult(existing, existing.seq, True)
    _require_open(locked)
    message = Message.objects.create(
        session_id=locked.session_id,
        author=author,
        role=_ROLE_BY_KIND[author.kind],
        content=content,
        state=MessageState.COMPLETE,
        client_id=client_id,
        seq=locked.first_seq,
        completed_at=timezone.now(),
    )
    _emit(locked, [(ev.MESSAGE_CREATED, {"message": ev.message_data(message)})])
    if author.kind == ParticipantKind.CUSTOMER and locked.control == Control.AI:
        # Committed with the message: a crash between the two cannot lose the run.
        run = runs.create_pending(locked.session_id, message)
        if run is not None:
            announce_run_on_commit(run.pk)
            ephemeral_on_commit(locked.session_id, agent_status_frame("thinking", run.pk))
    return PostResult(message, message.seq, False)


@transaction.atomic
def operator_reply(
    session_id: uuid.UUID | str, *, operator: AnyUser, content: Any, client_id: Any = None
) -> PostResult:
    """An operator's message. In a session held by the AI or the queue, the operator
    takes over first (in the same transaction); one held by another operator raises
    :class:`Conflict`."""
    content = _clean_text("content", content, limit=ds_settings.MAX_MESSAGE_CHARS)
    participant = join_operator(session_id, operator)
    locked = _lock(session_id, 0)
    if locked.control != Control.HUMAN or locked.assigned_operator_id != operator.pk:
        if locked.control == Control.HUMAN:
            raise Conflict(
                "another operator has taken this session",
                control=locked.control,
                assigned_operator_id=locked.assigned_operator_id,
            )
        change_control(
            session_id,
            Control.HUMAN,
            by=participant,
            reason="operator replied",
            operator=operator,
            expect=(Control.AI, Control.QUEUED),
        )
    return post_message(session_id, author=participant, content=content, client_id=client_id)


@transaction.atomic
def post_system_message(session_id: uuid.UUID | str, content: str) -> Message:
    """A notice every participant sees (e.g. "An operator joined")."""
    content = _clean_text("content", content, limit=ds_settings.MAX_MESSAGE_CHARS)
    locked = _lock(session_id, 1)
    message = Message.objects.create(
        session_id=locked.session_id,
        author=_system_participant(locked.session_id),
        role=Role.SYSTEM,
        content=content,
        seq=locked.first_seq,
        completed_at=timezone.now(),
    )
    _emit(locked, [(ev.MESSAGE_CREATED, {"message": ev.message_data(message)})])
    return message


@transaction.atomic
def start_assistant_message(session_id: uuid.UUID | str) -> Message:
    """Open a streaming assistant reply; only while the AI has control of an open session."""
    locked = _lock(session_id, 1)
    _require_open(locked)
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
    _emit(locked, [(ev.MESSAGE_CREATED, {"message": ev.message_data(message)})])
    return message


def _lock_streaming(message: Message | int, reserve: int, *fields: str) -> tuple[_Locked, Message]:
    message_id = message.pk if isinstance(message, Message) else message
    session_id = Message.objects.values_list("session_id", flat=True).filter(pk=message_id).first()
    if session_id is None:
        raise MessageFinished(f"message {message_id} does not exist")
    locked = _lock(session_id, reserve)
    # Read under the session lock: every write to a message holds it too.
    current = Message.objects.only("pk", "state", *fields).get(pk=message_id)
    if current.state != MessageState.STREAMING:
        raise MessageFinished(f"message {message_id} is already {current.state}")
    return locked, current


def _require_ai(locked: _Locked) -> None:
    _require_open(locked)
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
    locked, current = _lock_streaming(message, 1)
    _require_ai(locked)
    # Concatenate in the database: a long reply is never re-sent whole per delta.
    Message.objects.filter(pk=current.pk).update(content=Concat(F("content"), Value(text)))
    (event,) = _emit(locked, [(ev.MESSAGE_DELTA, {"message_id": current.pk, "text": text})])
    return event.seq


@transaction.atomic
def finish_assistant_message(message: Message | int) -> int:
    """Mark a streaming reply complete; returns the seq of ``message.completed``."""
    locked, current = _lock_streaming(message, 1, "content")
    _require_ai(locked)
    return _end_message(locked, current, MessageState.COMPLETE, {})


@transaction.atomic
def fail_assistant_message(message: Message | int, error: str) -> int:
    """Mark a streaming reply failed (agent error or crash), keeping its partial text."""
    locked, current = _lock_streaming(message, 1, "content")
    return _end_message(locked, current, MessageState.FAILED, {"error": str(error)[:500]})


_END_EVENT = {
    MessageState.COMPLETE: ev.MESSAGE_COMPLETED,
    MessageState.CANCELLED: ev.MESSAGE_CANCELLED,
    MessageState.FAILED: ev.MESSAGE_FAILED,
}


def _end_message(locked: _Locked, message: Message, state: str, extra: dict[str, Any]) -> int:
    now = timezone.now()
    Message.objects.filter(pk=message.pk).update(state=state, completed_at=now)
    payload = {"message_id": message.pk, "state": state, "length": len(message.content), **extra}
    (event,) = _emit(locked, [(_END_EVENT[state], payload)])
    return event.seq


def agent_status_frame(status: str, run_id: int | None = None) -> dict[str, Any]:
    """The ephemeral frame clients get when the agent's status changes."""
    return {"type": "agent.status", "status": status, "run_id": run_id}


def _stop_ai(locked: _Locked, reason: str) -> list[tuple[str, dict[str, Any]]]:
    """Cancel the AI's runs and streaming replies (keeping their text); return the events."""
    cancelled_runs = runs.cancel_active(locked.session_id, reason)
    if cancelled_runs:
        ephemeral_on_commit(locked.session_id, agent_status_frame("idle", cancelled_runs[-1]))
    streaming = list(
        Message.objects.filter(
            session_id=locked.session_id, role=Role.ASSISTANT, state=MessageState.STREAMING
        ).only("pk", "content")
    )
    if not streaming:
        return []
    Message.objects.filter(pk__in=[m.pk for m in streaming]).update(
        state=MessageState.CANCELLED, completed_at=timezone.now()
    )
    return [
        (
            ev.MESSAGE_CANCELLED,
            {
                "message_id": m.pk,
                "state": MessageState.CANCELLED,
                "length": len(m.content),
                "reason": reason,
            },
        )
        for m in streaming
    ]


@transaction.atomic
def cancel_reply(session_id: uuid.UUID | str, *, reason: str = "user") -> list[int]:
    """Stop the AI's current reply (or the run still thinking), keeping its partial text.

    Returns the seqs written (none when the agent had not started writing)."""
    locked = _lock(session_id, 1)
    return [e.seq for e in _emit(locked, _stop_ai(locked, reason))]


# --- control and lifecycle ------------------------------------------------------------------


def _control_event(
    previous: str, control: str, reason: str, by: Participant | None, **extra: Any
) -> tuple[str, dict[str, Any]]:
    return (
        ev.CONTROL_CHANGED,
        {
            "control": control,
            "previous": previous,
            "reason": reason,
            "by": ev.participant_data(by) if by else None,
            **extra,
        },
    )


@transaction.atomic
def request_handoff(
    session_id: uuid.UUID | str,
    *,
    by: Participant | None,
    reason: str = "",
    summary: str = "",
) -> bool:
    """Queue the session for a human. Stops the AI's reply. False if already queued/human."""
    reason = _clean_text("reason", reason, limit=500, allow_empty=True)
    summary = _clean_text("summary", summary, limit=4000, allow_empty=True)
    locked = _lock(session_id, 2)
    _require_open(locked)
    if locked.control != Control.AI:
        _emit(locked, [])
        return False
    DurableSession.objects.filter(pk=locked.session_id).update(control=Control.QUEUED)
    items = _stop_ai(locked, "handoff")
    items.append(_control_event(locked.control, Control.QUEUED, reason, by, summary=summary))
    _emit(locked, items)
    return True


@transaction.atomic
def change_control(
    session_id: uuid.UUID | str,
    control: str,
    *,
    by: Participant | None = None,
    reason: str = "",
    operator: AnyUser | None = None,
    expect: tuple[str, ...] | None = None,
) -> None:
    """Move control to ``control`` (AI / queued / human) atomically.

    ``expect`` lists the control values the caller believes current; any other raises
    :class:`Conflict` (two operators claiming at once: exactly one wins). Moving away
    from the AI cancels its streaming reply in the same transaction.
    """
    if control not in Control.values:
        raise InvalidInput("control", f"must be one of {', '.join(Control.values)}")
    if control == Control.HUMAN and operator is None:
        raise InvalidInput("operator", "human control needs an operator")
    locked = _lock(session_id, 2)
    _require_open(locked)
    if expect is not None and locked.control not in expect:
        raise Conflict(
            f"session is {locked.control}, expected {' or '.join(expect)}",
            control=locked.control,
            assigned_operator_id=locked.assigned_operator_id,
        )
    operator_id = operator.pk if operator is not None else None
    if locked.control == control and locked.assigned_operator_id == operator_id:
        _emit(locked, [])
        return
    DurableSession.objects.filter(pk=locked.session_id).update(
        control=control, assigned_operator=operator_id
    )
    items = _stop_ai(locked, "takeover") if control != Control.AI else []
    items.append(
        _control_event(locked.control, control, reason, by, assigned_operator_id=operator_id)
    )
    _emit(locked, items)


@transaction.atomic
def close_session(session_id: uuid.UUID | str, *, by: Participant | None = None) -> bool:
    """Close the session (stopping any AI reply). False if it was already closed."""
    locked = _lock(session_id, 2)
    if locked.status == Status.CLOSED:
        _emit(locked, [])
        return False
    DurableSession.objects.filter(pk=locked.session_id).update(
        status=Status.CLOSED, closed_at=timezone.now()
    )
    items = _stop_ai(locked, "closed")
    items.append((ev.SESSION_CLOSED, {"by": ev.participant_data(by) if by else None}))
    _emit(locked, items)
    return True


@transaction.atomic
def crash_run(run_id: int) -> bool:
    """Record that the process running ``run_id`` died (its lease expired).

    Its reply is marked failed (keeping the partial text) and, with
    ``ESCALATE_ON_CRASH``, the session moves to the human queue. False when the run was
    not (or no longer) a running run with an expired lease.
    """
    session_id = AgentRun.objects.filter(pk=run_id).values_list("session_id", flat=True).first()
    if session_id is None:
        return False
    locked = _lock(session_id, 0)
    run = AgentRun.objects.filter(
        pk=run_id, status=RunStatus.RUNNING, lease_expires_at__lt=timezone.now()
    ).first()
    if run is None:
        return False
    AgentRun.objects.filter(pk=run_id).update(
        status=RunStatus.CRASHED, finished_at=timezone.now(), error="lease expired"
    )
    error = "the agent stopped responding"
    items: list[tuple[str, dict[str, Any]]] = []
    for message in Message.objects.filter(
        session_id=locked.session_id, role=Role.ASSISTANT, state=MessageState.STREAMING
    ).only("pk", "content"):
        Message.objects.filter(pk=message.pk).update(
            state=MessageState.FAILED, completed_at=timezone.now()
        )
        payload = {
            "message_id": message.pk,
            "state": MessageState.FAILED,
            "length": len(message.content),
            "error": error,
        }
        items.append((ev.MESSAGE_FAILED, payload))
    ephemeral_on_commit(locked.session_id, agent_status_frame("unresponsive", run_id))
    if (
        ds_settings.ESCALATE_ON_CRASH
        and locked.status == Status.OPEN
        and locked.control == Control.AI
    ):
        DurableSession.objects.filter(pk=locked.session_id).update(control=Control.QUEUED)
        runs.cancel_active(locked.session_id, "escalated after an agent crash")
        items.append(
            _control_event(locked.control, Control.QUEUED, "agent unresponsive", None, summary="")
        )
    _emit(locked, items)
    return True


acreate_session = make_async(create_session)
ajoin_operator = make_async(join_operator)
apost_message = make_async(post_message)
aoperator_reply = make_async(operator_reply)
apost_system_message = make_async(post_system_message)
astart_assistant_message = make_async(start_assistant_message)
aappend_assistant_text = make_async(append_assistant_text)
afinish_assistant_message = make_async(finish_assistant_message)
afail_assistant_message = make_async(fail_assistant_message)
acancel_reply = make_async(cancel_reply)
arequest_handoff = make_async(request_handoff)
achange_control = make_async(change_control)
aclose_session = make_async(close_session)
acrash_run = make_async(crash_run)

"""Who controls a session (AI / queued / human), and its lifecycle."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from durable_sessions import wire
from durable_sessions.adapter import AnyUser, get_adapter
from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.publish import (
    ephemeral_on_commit,
)
from durable_sessions.errors import (
    Conflict,
    InvalidInput,
)
from durable_sessions.models import (
    AgentRun,
    Control,
    DurableSession,
    Event,
    HandoffAction,
    HandoffRecord,
    Message,
    MessageState,
    Participant,
    ParticipantKind,
    RunStatus,
    Status,
)
from durable_sessions.service import runs
from durable_sessions.service.log import Locked, clean_text, emit, lock, require_open
from durable_sessions.service.messages import (
    PostResult,
    agent_status_frame,
    end_streaming,
    post_message,
    post_system_message,
    stop_ai,
)
from durable_sessions.service.sessions import join_operator


def control_event(
    previous: str, control: str, reason: str, by: Participant | None, **extra: Any
) -> tuple[str, dict[str, Any]]:
    return (
        wire.CONTROL_CHANGED,
        {
            "control": control,
            "previous": previous,
            "reason": reason,
            "by": wire.participant_data(by) if by else None,
            **extra,
        },
    )


def _record(
    locked: Locked,
    written: list[Event],
    action: str,
    to_control: str,
    *,
    by: Participant | None = None,
    actor: AnyUser | None = None,
    operator_id: int | None = None,
    reason: str = "",
) -> None:
    """The audit row of a transition, pointing at the event that announced it."""
    seq = next(e.seq for e in written if e.type in (wire.CONTROL_CHANGED, wire.SESSION_CLOSED))
    HandoffRecord.objects.create(
        session_id=locked.session_id,
        action=action,
        from_control=locked.control,
        to_control=to_control,
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_kind=by.kind if by is not None else ("staff" if actor is not None else "system"),
        operator_id=operator_id,
        reason=reason,
        seq=seq,
    )


@transaction.atomic
def request_handoff(
    session_id: uuid.UUID | str,
    *,
    by: Participant | None,
    reason: str = "",
    summary: str = "",
    actor: AnyUser | None = None,
) -> bool:
    """Queue the session for a human. Stops the AI's reply. False if already queued/human."""
    reason = clean_text("reason", reason, limit=500, allow_empty=True)
    summary = clean_text("summary", summary, limit=4000, allow_empty=True)
    locked = lock(session_id, 2)
    require_open(locked)
    if locked.control != Control.AI:
        emit(locked, [])
        return False
    DurableSession.objects.filter(pk=locked.session_id).update(control=Control.QUEUED)
    items = stop_ai(locked, "handoff")
    items.append(control_event(locked.control, Control.QUEUED, reason, by, summary=summary))
    written = emit(locked, items)
    _record(
        locked, written, HandoffAction.REQUEST, Control.QUEUED, by=by, actor=actor, reason=reason
    )
    post_system_message(locked.session_id, "A member of our team will join you shortly.")
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
    actor: AnyUser | None = None,
    action: str = HandoffAction.CONTROL,
) -> bool:
    """Move control to ``control`` (AI / queued / human) atomically; False if unchanged.

    ``expect`` lists the control values the caller believes current; any other raises
    :class:`Conflict` (two operators claiming at once: exactly one wins). Moving away
    from the AI cancels its run and streaming reply in the same transaction.
    """
    if control not in Control.values:
        raise InvalidInput("control", f"must be one of {', '.join(Control.values)}")
    if control == Control.HUMAN and operator is None:
        raise InvalidInput("operator", "human control needs an operator")
    reason = clean_text("reason", reason, limit=500, allow_empty=True)
    locked = lock(session_id, 2)
    require_open(locked)
    if expect is not None and locked.control not in expect:
        raise Conflict(
            _conflict_message(locked, expect),
            control=locked.control,
            assigned_operator_id=locked.assigned_operator_id,
        )
    operator_id = operator.pk if operator is not None and control == Control.HUMAN else None
    if locked.control == control and locked.assigned_operator_id == operator_id:
        emit(locked, [])
        return False
    DurableSession.objects.filter(pk=locked.session_id).update(
        control=control, assigned_operator=operator_id
    )
    items = stop_ai(locked, "takeover") if control != Control.AI else []
    items.append(
        control_event(locked.control, control, reason, by, assigned_operator_id=operator_id)
    )
    written = emit(locked, items)
    _record(
        locked,
        written,
        action,
        control,
        by=by,
        actor=actor,
        operator_id=operator_id,
        reason=reason,
    )
    return True


def _conflict_message(locked: Locked, expect: tuple[str, ...]) -> str:
    if locked.control == Control.HUMAN and locked.assigned_operator_id:
        holder = (
            Participant.objects.filter(
                session_id=locked.session_id,
                kind=ParticipantKind.OPERATOR,
                user_id=locked.assigned_operator_id,
            )
            .values_list("display_name", flat=True)
            .first()
        )
        return f"taken by {holder or 'another operator'}"
    return f"session is {locked.control}, expected {' or '.join(expect)}"


@transaction.atomic
def take_over(session_id: uuid.UUID | str, operator: AnyUser, *, reason: str = "") -> Participant:
    """An operator claims the session from the AI or the queue: exactly one claim wins.

    The AI's run and reply are cancelled at once; the customer sees who joined.
    """
    participant = join_operator(session_id, operator)
    change_control(
        session_id,
        Control.HUMAN,
        by=participant,
        reason=reason or "taken over",
        operator=operator,
        expect=(Control.AI, Control.QUEUED),
        actor=operator,
        action=HandoffAction.TAKE_OVER,
    )
    post_system_message(session_id, f"{participant.display_name} joined the conversation.")
    return participant


def _require_holder(session_id: uuid.UUID | str, operator: AnyUser) -> Participant:
    locked = lock(session_id, 0)
    require_open(locked)
    if locked.control != Control.HUMAN or locked.assigned_operator_id != operator.pk:
        raise Conflict(
            _conflict_message(locked, (Control.HUMAN,))
            if locked.control == Control.HUMAN
            else f"session is {locked.control}: take it over first",
            control=locked.control,
            assigned_operator_id=locked.assigned_operator_id,
        )
    return join_operator(session_id, operator)


@transaction.atomic
def hand_back(session_id: uuid.UUID | str, operator: AnyUser, *, reason: str = "") -> None:
    """The operator holding the session returns it to the AI.

    The next run sees that it was handed back (``Turn.handed_back``) so that the
    agent does not hand off again at once.
    """
    participant = _require_holder(session_id, operator)
    change_control(
        session_id,
        Control.AI,
        by=participant,
        reason=reason or "handed back to the AI",
        expect=(Control.HUMAN,),
        actor=operator,
        action=HandoffAction.HAND_BACK,
    )
    post_system_message(session_id, "You are back with our assistant.")


@transaction.atomic
def transfer(
    session_id: uuid.UUID | str, operator: AnyUser, to: AnyUser, *, reason: str = ""
) -> Participant:
    """The operator holding the session passes it to another operator."""
    if not get_adapter().is_operator(to):
        raise InvalidInput("to", "must be an active operator")
    if to.pk == operator.pk:
        raise InvalidInput("to", "must be another operator")
    participant = _require_holder(session_id, operator)
    target = join_operator(session_id, to)
    change_control(
        session_id,
        Control.HUMAN,
        by=participant,
        reason=reason or f"transferred to {target.display_name}",
        operator=to,
        expect=(Control.HUMAN,),
        actor=operator,
        action=HandoffAction.TRANSFER,
    )
    post_system_message(session_id, f"{target.display_name} has taken over the conversation.")
    return target


@transaction.atomic
def operator_reply(
    session_id: uuid.UUID | str, *, operator: AnyUser, content: Any, client_id: Any = None
) -> PostResult:
    """An operator's message. In a session held by the AI or the queue, the operator
    takes over first (in the same transaction); one held by another operator raises
    :class:`Conflict`."""
    content = clean_text("content", content, limit=ds_settings.MAX_MESSAGE_CHARS)
    locked = lock(session_id, 0)
    if (
        client_id is not None
        and Message.objects.filter(session_id=locked.session_id, client_id=client_id).exists()
    ):
        # A retry: answer it without taking the session over again.
        participant = join_operator(session_id, operator)
        return post_message(session_id, author=participant, content=content, client_id=client_id)
    if locked.control != Control.HUMAN or locked.assigned_operator_id != operator.pk:
        if locked.control == Control.HUMAN:
            raise Conflict(
                _conflict_message(locked, (Control.AI, Control.QUEUED)),
                control=locked.control,
                assigned_operator_id=locked.assigned_operator_id,
            )
        take_over(session_id, operator, reason="operator replied")
    participant = join_operator(session_id, operator)
    return post_message(session_id, author=participant, content=content, client_id=client_id)


@transaction.atomic
def close_session(
    session_id: uuid.UUID | str,
    *,
    by: Participant | None = None,
    actor: AnyUser | None = None,
    reason: str = "",
) -> bool:
    """Close the session (stopping any AI reply). False if it was already closed."""
    reason = clean_text("reason", reason, limit=500, allow_empty=True)
    locked = lock(session_id, 2)
    if locked.status == Status.CLOSED:
        emit(locked, [])
        return False
    DurableSession.objects.filter(pk=locked.session_id).update(
        status=Status.CLOSED, closed_at=timezone.now()
    )
    items = stop_ai(locked, "closed")
    items.append(
        (
            wire.SESSION_CLOSED,
            {"by": wire.participant_data(by) if by else None, "reason": reason},
        )
    )
    written = emit(locked, items)
    _record(locked, written, HandoffAction.CLOSE, locked.control, by=by, actor=actor, reason=reason)
    post_system_message(locked.session_id, "This conversation was closed.")
    return True


@transaction.atomic
def close_by_operator(session_id: uuid.UUID | str, operator: AnyUser, *, reason: str = "") -> bool:
    """An operator closes the session, unless another operator holds it (:class:`Conflict`,
    "taken by ..."). False if it was already closed. The console and the API share this rule.
    """
    locked = lock(session_id, 0)
    if locked.status == Status.CLOSED:
        return False
    if locked.control == Control.HUMAN and locked.assigned_operator_id != operator.pk:
        raise Conflict(
            _conflict_message(locked, (Control.HUMAN,)),
            control=locked.control,
            assigned_operator_id=locked.assigned_operator_id,
        )
    # The closing event names the operator when they took part in the session.
    me = Participant.objects.filter(
        session_id=locked.session_id, kind=ParticipantKind.OPERATOR, user_id=operator.pk
    ).first()
    return close_session(session_id, by=me, actor=operator, reason=reason)


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
    locked = lock(session_id, 0)
    run = AgentRun.objects.filter(
        pk=run_id, status=RunStatus.RUNNING, lease_expires_at__lt=timezone.now()
    ).first()
    if run is None:
        return False
    AgentRun.objects.filter(pk=run_id).update(
        status=RunStatus.CRASHED, finished_at=timezone.now(), error="lease expired"
    )
    items = end_streaming(locked, MessageState.FAILED, error="the agent stopped responding")
    ephemeral_on_commit(locked.session_id, agent_status_frame("unresponsive", run_id))
    if (
        ds_settings.ESCALATE_ON_CRASH
        and locked.status == Status.OPEN
        and locked.control == Control.AI
    ):
        DurableSession.objects.filter(pk=locked.session_id).update(control=Control.QUEUED)
        runs.cancel_active(locked.session_id, "escalated after an agent crash")
        items.append(
            control_event(locked.control, Control.QUEUED, "agent unresponsive", None, summary="")
        )
        written = emit(locked, items)
        _record(
            locked, written, HandoffAction.ESCALATE, Control.QUEUED, reason="agent unresponsive"
        )
        post_system_message(
            locked.session_id,
            "Our assistant stopped responding. A member of our team will take over.",
        )
        return True
    emit(locked, items)
    return True

"""Who controls a session (AI / queued / human), and its lifecycle.

Each operation is one unit of work (:func:`session_write`): one lock, one update of the
session row, its events in one insert and one wake-up, however many steps it takes
(an operator who replies to a queued session joins, takes over and posts at once).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import F
from django.utils import timezone

from durable_sessions import signals, wire
from durable_sessions.adapter import AnyUser, get_adapter
from durable_sessions.app_settings import ds_settings
from durable_sessions.errors import Conflict, InvalidInput
from durable_sessions.models import (
    AgentRun,
    Control,
    HandoffAction,
    HandoffRecord,
    MessageState,
    Participant,
    ParticipantKind,
    RunStatus,
    Status,
)
from durable_sessions.service import retries, runs
from durable_sessions.service.messages import (
    PostResult,
    add_notice,
    add_post,
    end_streaming,
    find_retry,
    stop_ai,
)
from durable_sessions.service.runs import agent_status_frame
from durable_sessions.service.sessions import operator_participant
from durable_sessions.service.unit import SessionWrite, session_write
from durable_sessions.service.validation import (
    MAX_REASON_CHARS,
    MAX_SUMMARY_CHARS,
    clean_client_id,
    clean_team,
    clean_text,
)


def _reason(value: Any) -> str:
    return clean_text("reason", value, limit=MAX_REASON_CHARS, allow_empty=True)


def _announce(
    w: SessionWrite,
    control: str,
    action: str,
    *,
    stop: str | None,
    by: Participant | None = None,
    actor: AnyUser | None = None,
    operator_id: int | None = None,
    reason: str = "",
    **extra: Any,
) -> None:
    """Hand the session to ``control``: stop the AI (with the reason ``stop``) when it
    loses control, announce the change, and leave the audit row that points at it."""
    previous = w.control
    if stop is not None and control != Control.AI:
        stop_ai(w, stop)
    w.set(control=control, assigned_operator_id=operator_id)
    payload = {
        "control": control,
        "previous": previous,
        "reason": reason,
        "by": wire.participant_data(by) if by else None,
        **extra,
    }
    seq = w.append(wire.CONTROL_CHANGED, payload)
    _audit(
        w,
        seq,
        action,
        previous,
        control,
        by=by,
        actor=actor,
        operator_id=operator_id,
        reason=reason,
    )


def _audit(
    w: SessionWrite,
    seq: int,
    action: str,
    from_control: str,
    to_control: str,
    *,
    by: Participant | None = None,
    actor: AnyUser | None = None,
    operator_id: int | None = None,
    reason: str = "",
) -> None:
    w.record(
        HandoffRecord(
            action=action,
            from_control=from_control,
            to_control=to_control,
            actor=actor if actor is not None and actor.is_authenticated else None,
            actor_kind=by.kind if by is not None else ("staff" if actor is not None else "system"),
            operator_id=operator_id,
            reason=reason,
            seq=seq,
        )
    )


def request_handoff(
    session_id: uuid.UUID | str,
    *,
    by: Participant | None,
    reason: str = "",
    summary: str = "",
    actor: AnyUser | None = None,
    team: str = "",
) -> bool:
    """Queue the session for a human. Stops the AI's reply. False if already queued/human.

    ``team`` (a slug, optional) routes it to a team of operators: it travels in the
    ``control.changed`` event, so the console reads it with the queue.
    """
    reason = _reason(reason)
    team = clean_team(team)
    summary = clean_text("summary", summary, limit=MAX_SUMMARY_CHARS, allow_empty=True)
    with session_write(session_id) as w:
        w.require_open()
        if w.control != Control.AI:
            return False
        _announce(
            w,
            Control.QUEUED,
            HandoffAction.REQUEST,
            stop="handoff",
            by=by,
            actor=actor,
            reason=reason,
            summary=summary,
            **({"team": team} if team else {}),
        )
        add_notice(w, "A member of our team will join you shortly.")
        w.signal(signals.handoff_requested, by=by, reason=reason, summary=summary)
        return True


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
    reason = _reason(reason)
    with session_write(session_id) as w:
        return _change(
            w,
            control,
            action,
            by=by,
            reason=reason,
            operator=operator,
            expect=expect,
            actor=actor,
        )


def _change(
    w: SessionWrite,
    control: str,
    action: str,
    *,
    by: Participant | None,
    reason: str,
    actor: AnyUser | None,
    operator: AnyUser | None = None,
    expect: tuple[str, ...] | None = None,
) -> bool:
    w.require_open()
    if expect is not None and w.control not in expect:
        raise _conflict(w, expect)
    operator_id = operator.pk if operator is not None and control == Control.HUMAN else None
    if w.control == control and w.assigned_operator_id == operator_id:
        return False
    _announce(
        w,
        control,
        action,
        stop="takeover",
        by=by,
        actor=actor,
        operator_id=operator_id,
        reason=reason,
        assigned_operator_id=operator_id,
    )
    return True


def _conflict(w: SessionWrite, expect: tuple[str, ...]) -> Conflict:
    if w.control == Control.HUMAN and w.assigned_operator_id:
        holder = w.participant(ParticipantKind.OPERATOR, w.assigned_operator_id)
        message = f"taken by {holder.display_name if holder else 'another operator'}"
    else:
        message = f"session is {w.control}, expected {' or '.join(expect)}"
    return Conflict(message, control=w.control, assigned_operator_id=w.assigned_operator_id)


def take_over(session_id: uuid.UUID | str, operator: AnyUser, *, reason: str = "") -> Participant:
    """An operator claims the session from the AI or the queue: exactly one claim wins.

    The AI's run and reply are cancelled at once; the customer sees who joined.
    """
    reason = _reason(reason)
    with session_write(session_id) as w:
        return _take_over(w, operator, reason or "taken over")


def _take_over(w: SessionWrite, operator: AnyUser, reason: str) -> Participant:
    w.require_open()
    if w.control not in (Control.AI, Control.QUEUED):
        raise _conflict(w, (Control.AI, Control.QUEUED))
    participant = operator_participant(w, operator, with_system=True)
    _change(
        w,
        Control.HUMAN,
        HandoffAction.TAKE_OVER,
        by=participant,
        reason=reason,
        operator=operator,
        actor=operator,
    )
    add_notice(w, f"{participant.display_name} joined the conversation.")
    w.signal(signals.taken_over, operator=operator, reason=reason)
    return participant


def _holder(w: SessionWrite, operator: AnyUser) -> Participant:
    """The operator's participant, when they hold the session; :class:`Conflict` if not."""
    w.require_open()
    if w.control != Control.HUMAN or w.assigned_operator_id != operator.pk:
        if w.control == Control.HUMAN:
            raise _conflict(w, (Control.HUMAN,))
        raise Conflict(
            f"session is {w.control}: take it over first",
            control=w.control,
            assigned_operator_id=w.assigned_operator_id,
        )
    return operator_participant(w, operator)


def hand_back(session_id: uuid.UUID | str, operator: AnyUser, *, reason: str = "") -> None:
    """The operator holding the session returns it to the AI.

    The next run sees that it was handed back (``Turn.handed_back``) so that the
    agent does not hand off again at once.
    """
    reason = _reason(reason)
    with session_write(session_id) as w:
        participant = _holder(w, operator)
        _change(
            w,
            Control.AI,
            HandoffAction.HAND_BACK,
            by=participant,
            reason=reason or "handed back to the AI",
            actor=operator,
        )
        add_notice(w, "You are back with our assistant.")
        w.signal(signals.handed_back, operator=operator, reason=reason)


def transfer(
    session_id: uuid.UUID | str, operator: AnyUser, to: AnyUser, *, reason: str = ""
) -> Participant:
    """The operator holding the session passes it to another operator."""
    if not get_adapter().is_operator(to):
        raise InvalidInput("to", "must be an active operator")
    if to.pk == operator.pk:
        raise InvalidInput("to", "must be another operator")
    reason = _reason(reason)
    with session_write(session_id) as w:
        participant = _holder(w, operator)
        target = operator_participant(w, to, with_system=True)
        _change(
            w,
            Control.HUMAN,
            HandoffAction.TRANSFER,
            by=participant,
            reason=reason or f"transferred to {target.display_name}",
            operator=to,
            actor=operator,
        )
        add_notice(w, f"{target.display_name} has taken over the conversation.")
        w.signal(signals.transferred, operator=operator, to=to)
        return target


def operator_reply(
    session_id: uuid.UUID | str, *, operator: AnyUser, content: Any, client_id: Any = None
) -> PostResult:
    """An operator's message. In a session held by the AI or the queue, the operator
    takes over first (in the same transaction); one held by another operator raises
    :class:`Conflict`."""
    content = clean_text("content", content, limit=ds_settings.MAX_MESSAGE_CHARS)
    client_id = clean_client_id(client_id)
    with session_write(session_id) as w:
        participant = w.participant(ParticipantKind.OPERATOR, operator.pk)
        if participant is not None:
            # A retry is answered without taking the session over again.
            retry = find_retry(w, client_id, author=participant, content=content)
            if retry is not None:
                return retry
        if w.control != Control.HUMAN or w.assigned_operator_id != operator.pk:
            if w.control == Control.HUMAN:
                raise _conflict(w, (Control.AI, Control.QUEUED))
            participant = _take_over(w, operator, "operator replied")
        elif participant is None:
            participant = operator_participant(w, operator)
        return add_post(w, participant, content, client_id)


def close_session(
    session_id: uuid.UUID | str,
    *,
    by: Participant | None = None,
    actor: AnyUser | None = None,
    reason: str = "",
) -> bool:
    """Close the session (stopping any AI reply). False if it was already closed."""
    reason = _reason(reason)
    with session_write(session_id) as w:
        return _close(w, by=by, actor=actor, reason=reason)


def _close(w: SessionWrite, *, by: Participant | None, actor: AnyUser | None, reason: str) -> bool:
    if w.status == Status.CLOSED:
        return False
    stop_ai(w, "closed")
    w.set(status=Status.CLOSED, closed_at=timezone.now())
    seq = w.append(
        wire.SESSION_CLOSED,
        {"by": wire.participant_data(by) if by else None, "reason": reason},
    )
    _audit(w, seq, HandoffAction.CLOSE, w.control, w.control, by=by, actor=actor, reason=reason)
    add_notice(w, "This conversation was closed.")
    w.signal(signals.session_closed, by=by, actor=actor, reason=reason)
    return True


def close_by_operator(session_id: uuid.UUID | str, operator: AnyUser, *, reason: str = "") -> bool:
    """An operator closes the session, unless another operator holds it (:class:`Conflict`,
    "taken by ..."). False if it was already closed. The console and the API share this rule.
    """
    reason = _reason(reason)
    with session_write(session_id) as w:
        if w.status == Status.CLOSED:
            return False
        if w.control == Control.HUMAN and w.assigned_operator_id != operator.pk:
            raise _conflict(w, (Control.HUMAN,))
        # The closing event names the operator when they took part in the session.
        me = w.participant(ParticipantKind.OPERATOR, operator.pk)
        return _close(w, by=me, actor=operator, reason=reason)


def crash_run(run_id: int) -> bool:
    """Record that the process running ``run_id`` died (its lease expired).

    While it has attempts left (``RUN_MAX_ATTEMPTS``) it is pending again and another
    worker continues it (:mod:`.retries`). Otherwise its reply is marked failed (keeping
    the partial text) and, with ``ESCALATE_ON_CRASH``, the session moves to the human
    queue. False when the run was not (or no longer) a running run with an expired lease.
    """
    session_id = runs.session_of(run_id)
    if session_id is None:
        return False
    with session_write(session_id) as w:
        expired = AgentRun.objects.filter(
            pk=run_id, status=RunStatus.RUNNING, lease_expires_at__lt=timezone.now()
        )
        run = expired.first()
        if run is None:
            return False
        if retries.can_retry(w, run, crashed=True):
            retries.requeue(w, run, retries.LOST)
            return True
        expired.update(
            status=RunStatus.CRASHED,
            finished_at=timezone.now(),
            error="lease expired",
            crashes=F("crashes") + 1,
        )
        pending, streaming = runs.active_work(w.session_id)
        end_streaming(w, streaming, MessageState.FAILED, error="the agent stopped responding")
        w.ephemeral(agent_status_frame("unresponsive", run_id))
        escalate = (
            ds_settings.ESCALATE_ON_CRASH and w.status == Status.OPEN and w.control == Control.AI
        )
        w.signal(signals.run_crashed, run_id=run_id, escalated=escalate)
        if escalate:
            if pending:
                runs.cancel(pending, "escalated after an agent crash")
            _announce(
                w,
                Control.QUEUED,
                HandoffAction.ESCALATE,
                stop=None,
                reason="agent unresponsive",
                summary="",
            )
            add_notice(w, "Our assistant stopped responding. A member of our team will take over.")
        return True

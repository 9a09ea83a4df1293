"""Approvals of tool calls: asked by the runtime, answered by a person, or expired.

A run whose step left a call ``awaiting-approval`` is suspended (``awaiting``): no worker
holds it. The first answer, taken under the session lock, decides; a retry of that answer
(the same ``client_id``) gets the same result, any other answer ``already_answered``. When
no call of the reply waits any more, the run is pending again and any worker continues it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from durable_sessions.adapter import AnyUser
from durable_sessions.errors import AlreadyAnswered, ApprovalNotFound, InvalidInput, NotAllowed
from durable_sessions.models import (
    AgentRun,
    Approvers,
    MessagePart,
    Participant,
    ParticipantKind,
    PartState,
    PartType,
    RunStatus,
)
from durable_sessions.service.parts import tool_updated
from durable_sessions.service.runs import agent_status_frame
from durable_sessions.service.sessions import operator_participant
from durable_sessions.service.unit import SessionWrite, session_write
from durable_sessions.service.validation import MAX_REASON_CHARS, clean_client_id

_APPROVAL_ID = re.compile(r"m([0-9]{1,18})p([0-9]{1,9})")
# Who may answer, by the approvers a call names.
_MAY_ANSWER = {
    ParticipantKind.CUSTOMER: (Approvers.ANY, Approvers.CUSTOMER),
    ParticipantKind.OPERATOR: (Approvers.ANY, Approvers.OPERATOR),
}


@dataclass(frozen=True)
class ApprovalResult:
    """The answered tool call, the seq of its ``tool.updated`` event and whether this
    was a retry of the answer that decided it."""

    part: MessagePart
    seq: int | None
    duplicate: bool


def _clean_reason(reason: Any) -> str:
    if reason is None:
        return ""
    if not isinstance(reason, str):
        raise InvalidInput("reason", "must be a string")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidInput("reason", f"longer than {MAX_REASON_CHARS} characters")
    return reason.replace("\x00", "").strip()


def find_call(session_id: uuid.UUID, approval_id: Any) -> MessagePart:
    """The tool call an approval id names in this session."""
    match = _APPROVAL_ID.fullmatch(approval_id) if isinstance(approval_id, str) else None
    part = (
        MessagePart.objects.select_related("decided_by")
        .filter(
            session_id=session_id,
            message_id=int(match.group(1)),
            index=int(match.group(2)),
            type=PartType.TOOL_CALL,
        )
        .first()
        if match
        else None
    )
    if part is None or not part.approvers:
        raise ApprovalNotFound(f"no approval {str(approval_id)[:40]!r} in this session")
    return part


def answer_approval(
    session_id: uuid.UUID | str,
    approval_id: Any,
    *,
    approved: Any,
    operator: AnyUser | None = None,
    reason: Any = "",
    client_id: Any = None,
) -> ApprovalResult:
    """Approve or deny a waiting tool call, as the customer or as ``operator``.

    Exactly one answer decides: a later one raises :class:`AlreadyAnswered`, unless it is
    a retry (same ``client_id`` and the same answer by the same person), which returns
    the stored decision. Raises :class:`NotAllowed` when the call's approvers exclude the
    caller. Nothing is written on a refusal.
    """
    if not isinstance(approved, bool):
        raise InvalidInput("approved", "must be true or false")
    reason = _clean_reason(reason)
    client_id = clean_client_id(client_id) or ""
    with session_write(session_id) as w:
        part = find_call(w.session_id, approval_id)
        who = (
            operator_participant(w, operator)
            if operator is not None
            else w.participant(ParticipantKind.CUSTOMER)
        )
        assert who is not None
        if part.approvers not in _MAY_ANSWER.get(who.kind, ()):
            raise NotAllowed(f"this approval is for {Approvers(part.approvers).label.lower()}")
        decision = "approved" if approved else "denied"
        if part.state != PartState.AWAITING_APPROVAL:
            if (
                client_id
                and part.decision_client_id == client_id
                and part.decision == decision
                and part.decided_by_id == who.pk
            ):
                return ApprovalResult(part, None, True)
            raise AlreadyAnswered(
                f"approval {part.wire_id} was already answered ({part.decision or part.state})"
            )
        w.require_open()
        seq = decide(w, part, decision, who=who, reason=reason, client_id=client_id)
        return ApprovalResult(part, seq, False)


def decide(
    w: SessionWrite,
    part: MessagePart,
    decision: str,
    *,
    who: Participant | None,
    reason: str,
    client_id: str = "",
) -> int:
    """Record the decision on a waiting call under the unit's lock, and resume its run
    once no call of the reply waits any more."""
    now = timezone.now()
    part.state = PartState.APPROVED if decision == "approved" else PartState.DENIED
    part.decision, part.decision_reason = decision, reason
    part.decided_by, part.decided_at, part.decision_client_id = who, now, client_id
    if part.state == PartState.DENIED:
        # What the agent reads as the call's result.
        by = f" by the {who.kind}" if who is not None else ""
        part.error = f"{decision}{by}" + (f": {reason}" if reason else "")
        part.completed_at = now
    part.save(
        update_fields=[
            "state",
            "decision",
            "decision_reason",
            "decided_by",
            "decided_at",
            "decision_client_id",
            "completed_at",
            "error",
        ]
    )
    seq = tool_updated(w, part)
    resume_when_answered(w, part.message_id)
    return seq


def resume_when_answered(w: SessionWrite, message_id: int) -> None:
    """Make the reply's suspended run pending again (any worker continues it) when none
    of its calls waits for an answer."""
    if MessagePart.objects.filter(
        message_id=message_id, state=PartState.AWAITING_APPROVAL
    ).exists():
        return
    run = (
        AgentRun.objects.filter(
            session_id=w.session_id, message_id=message_id, status=RunStatus.AWAITING
        )
        .values_list("pk", flat=True)
        .first()
    )
    if run is None:
        return  # still running: it sees the answer before it would suspend
    AgentRun.objects.filter(pk=run).update(status=RunStatus.PENDING, worker="")
    w.announce_run(run)
    w.ephemeral(agent_status_frame("thinking", run))


def suspend(run_id: int, worker: str, message_id: int) -> bool:
    """Suspend a running run whose reply has calls awaiting approval: the run waits,
    holding no worker. False (the run goes on) when every call was answered already."""
    session_id = AgentRun.objects.filter(pk=run_id).values_list("session_id", flat=True).get()
    with session_write(session_id) as w:
        waiting = list(
            MessagePart.objects.filter(
                message_id=message_id, state=PartState.AWAITING_APPROVAL
            ).values_list("tool_name", flat=True)
        )
        if not waiting:
            return False
        suspended = AgentRun.objects.filter(
            pk=run_id, status=RunStatus.RUNNING, worker=worker
        ).update(status=RunStatus.AWAITING, lease_expires_at=None)
        if suspended:
            w.ephemeral(agent_status_frame("awaiting_approval", run_id, tool=waiting[0]))
        return bool(suspended)


def expire_approvals(limit: int = 100) -> int:
    """Deny the calls whose approval expired (decision ``expired``); the agent reads the
    expiry as the call's result. Returns how many expired."""
    due = list(
        MessagePart.objects.filter(
            state=PartState.AWAITING_APPROVAL, approval_expires_at__lt=timezone.now()
        )
        .order_by("approval_expires_at")
        .values_list("pk", "session_id")[:limit]
    )
    expired = 0
    for pk, session_id in due:
        with session_write(session_id) as w:
            part = MessagePart.objects.get(pk=pk)
            if part.state != PartState.AWAITING_APPROVAL:
                continue  # answered meanwhile
            decide(w, part, "expired", who=None, reason="the approval request expired")
            expired += 1
    return expired


def pending_approvals(session_id: uuid.UUID) -> list[MessagePart]:
    """The session's calls waiting for an answer (what a new device shows at once)."""
    return list(
        MessagePart.objects.filter(session_id=session_id, state=PartState.AWAITING_APPROVAL)
        .order_by("message_id", "index")
        .select_related("decided_by")
    )

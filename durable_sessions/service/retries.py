"""Runs that lost their worker: put back to pending, so another worker continues them.

A run whose lease expired (its process died) is retried until it has crashed
``RUN_MAX_ATTEMPTS`` times; a run its worker hands back while stopping (SIGTERM) is
retried without counting as a crash. Either way, in one unit of work: the run is pending
again (the next claim continues its reply from its parts), the reply's cut reasoning
ends, a tool call whose input was cut off fails, and a ``run.retrying`` event tells every
client that the assistant is reconnecting. A cut text part stays open: the next attempt
continues it, or ends it as cut and restarts it (:mod:`durable_sessions.runtime.resumption`).
"""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from durable_sessions import signals, wire
from durable_sessions.app_settings import ds_settings
from durable_sessions.models import (
    AgentRun,
    Control,
    Message,
    MessagePart,
    MessageState,
    PartState,
    PartType,
    RunStatus,
    Status,
)
from durable_sessions.service.parts import MAX_ERROR_CHARS, tool_updated
from durable_sessions.service.runs import agent_status_frame, session_of
from durable_sessions.service.unit import SessionWrite, session_write

LOST = "worker_lost"
HANDED_BACK = "handed_back"


def can_retry(w: SessionWrite, run: AgentRun, *, crashed: bool) -> bool:
    """Whether ``run`` may go on with another worker: attempts left, the AI still in
    control, its reply (if any) still streaming."""
    if crashed and run.crashes + 1 >= ds_settings.RUN_MAX_ATTEMPTS:
        return False
    if w.status != Status.OPEN or w.control != Control.AI:
        return False
    if run.message_id is None:
        return True
    state = Message.objects.filter(pk=run.message_id).values_list("state", flat=True).first()
    return state == MessageState.STREAMING


def requeue(w: SessionWrite, run: AgentRun, reason: str) -> int:
    """Put ``run`` (locked by ``w``) back to pending with its ``run.retrying`` event."""
    crashed = reason == LOST
    AgentRun.objects.filter(pk=run.pk).update(
        status=RunStatus.PENDING,
        worker="",
        lease_expires_at=None,
        crashes=F("crashes") + (1 if crashed else 0),
        retry_reason=reason,
        error=f"attempt {run.attempts}: {'lease expired' if crashed else 'handed back'}",
    )
    if run.message_id is not None:
        _settle_cut_parts(w, run.message_id)
    seq = w.append(
        wire.RUN_RETRYING,
        {
            "run_id": run.pk,
            "message_id": run.message_id,
            "attempt": run.attempts + 1,
            "max_attempts": ds_settings.RUN_MAX_ATTEMPTS,
            "reason": reason,
        },
    )
    w.ephemeral(agent_status_frame("reconnecting", run.pk))
    w.signal(signals.run_retried, run_id=run.pk, attempt=run.attempts + 1, reason=reason)
    w.announce_run(run.pk)
    return seq


def _settle_cut_parts(w: SessionWrite, message_id: int) -> None:
    """Reasoning cut mid-stream ends; a tool call whose input was cut off fails (the next
    attempt's model step asks again if it still needs it)."""
    now = timezone.now()
    for part in MessagePart.objects.filter(
        message_id=message_id, type=PartType.REASONING, state=PartState.STREAMING
    ):
        MessagePart.objects.filter(pk=part.pk).update(state=PartState.DONE, completed_at=now)
        w.append(
            wire.PART_ENDED,
            {"message_id": message_id, "part_id": part.wire_id, "state": PartState.DONE},
        )
    for part in MessagePart.objects.filter(
        message_id=message_id, type=PartType.TOOL_CALL, state=PartState.INPUT_STREAMING
    ):
        part.state, part.completed_at = PartState.ERROR, now
        part.error = "the call's input was cut off when the assistant was interrupted"[
            :MAX_ERROR_CHARS
        ]
        part.save(update_fields=["state", "error", "completed_at"])
        tool_updated(w, part)


def release(run_id: int, worker: str) -> bool:
    """Hand a running run of ``worker`` back (the worker is stopping): pending again,
    no crash counted. False when it was not this worker's running run any more."""
    session_id = session_of(run_id)
    if session_id is None:
        return False
    with session_write(session_id) as w:
        run = AgentRun.objects.filter(pk=run_id, status=RunStatus.RUNNING, worker=worker).first()
        if run is None:
            return False
        requeue(w, run, HANDED_BACK)
        return True

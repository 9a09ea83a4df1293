"""Agent-run bookkeeping: pending -> running (one worker, under a lease) -> finished.

Called by the session service (inside its transactions) and by the runtime. Claims
take the session row lock first, so that one session never has two running runs.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from durable_sessions.app_settings import ds_settings
from durable_sessions.models import AgentRun, Control, Message, RunStatus, Status

ACTIVE = (RunStatus.PENDING, RunStatus.RUNNING)


def lease_until() -> timezone.datetime:
    return timezone.now() + timedelta(seconds=float(ds_settings.LEASE_TIMEOUT))


def create_pending(session_id: uuid.UUID, trigger: Message) -> AgentRun | None:
    """A new pending run, unless one is already pending (it will read the newer history)."""
    if AgentRun.objects.filter(session_id=session_id, status=RunStatus.PENDING).exists():
        return None
    return AgentRun.objects.create(session_id=session_id, trigger=trigger)


def cancel_active(session_id: uuid.UUID, reason: str) -> list[int]:
    """Mark the session's pending and running runs cancelled; returns their ids."""
    ids = list(
        AgentRun.objects.filter(session_id=session_id, status__in=ACTIVE).values_list(
            "pk", flat=True
        )
    )
    if ids:
        AgentRun.objects.filter(pk__in=ids).update(
            status=RunStatus.CANCELLED, finished_at=timezone.now(), error=reason
        )
    return ids


def claim(run_id: int, worker: str) -> AgentRun | None:
    """Atomically move a pending run to running for ``worker``; None if it cannot run now.

    A run whose session left AI control (or closed) is cancelled; a run whose session
    already has a running run stays pending until that one ends.
    """
    from durable_sessions.service import lock_session  # the service owns the session lock

    with transaction.atomic():
        session_id = (
            AgentRun.objects.filter(pk=run_id, status=RunStatus.PENDING)
            .values_list("session_id", flat=True)
            .first()
        )
        if session_id is None:
            return None
        locked = lock_session(session_id)
        if locked.status != Status.OPEN or locked.control != Control.AI:
            AgentRun.objects.filter(pk=run_id, status=RunStatus.PENDING).update(
                status=RunStatus.CANCELLED,
                finished_at=timezone.now(),
                error="the AI no longer controls the session",
            )
            return None
        if AgentRun.objects.filter(session_id=session_id, status=RunStatus.RUNNING).exists():
            return None
        now = timezone.now()
        updated = AgentRun.objects.filter(pk=run_id, status=RunStatus.PENDING).update(
            status=RunStatus.RUNNING, worker=worker, started_at=now, lease_expires_at=lease_until()
        )
        if not updated:
            return None
        return AgentRun.objects.get(pk=run_id)


def renew_lease(run_id: int, worker: str) -> bool:
    """Extend the lease; False when the run is no longer this worker's running run."""
    return bool(
        AgentRun.objects.filter(pk=run_id, status=RunStatus.RUNNING, worker=worker).update(
            lease_expires_at=lease_until()
        )
    )


def attach_message(run_id: int, message_id: int) -> None:
    AgentRun.objects.filter(pk=run_id).update(message_id=message_id)


def finish(run_id: int, worker: str, status: str, error: str = "") -> bool:
    """End a running run; False if it had already ended (cancelled or reaped)."""
    return bool(
        AgentRun.objects.filter(pk=run_id, status=RunStatus.RUNNING, worker=worker).update(
            status=status, finished_at=timezone.now(), error=error[:2000]
        )
    )


def pending_ids(limit: int) -> list[int]:
    return list(
        AgentRun.objects.filter(status=RunStatus.PENDING)
        .order_by("id")
        .values_list("pk", flat=True)[:limit]
    )


def next_pending_in_session(session_id: uuid.UUID) -> int | None:
    return (
        AgentRun.objects.filter(session_id=session_id, status=RunStatus.PENDING)
        .order_by("id")
        .values_list("pk", flat=True)
        .first()
    )


def expired_ids(limit: int = 100) -> list[int]:
    return list(
        AgentRun.objects.filter(status=RunStatus.RUNNING, lease_expires_at__lt=timezone.now())
        .order_by("lease_expires_at")
        .values_list("pk", flat=True)[:limit]
    )


def agent_status(session_id: uuid.UUID) -> str:
    """What clients show for the agent: thinking, streaming, unresponsive or idle."""
    run = (
        AgentRun.objects.filter(session_id=session_id)
        .order_by("-id")
        .only("status", "message_id")
        .first()
    )
    if run is None:
        return "idle"
    if run.status == RunStatus.PENDING:
        return "thinking"
    if run.status == RunStatus.RUNNING:
        return "streaming" if run.message_id else "thinking"
    if run.status == RunStatus.CRASHED:
        return "unresponsive"
    return "idle"

"""Metrics of committed changes, taken from the app's own signals (sent after commit)."""

from __future__ import annotations

import uuid
from typing import Any

from durable_sessions import signals
from durable_sessions.models import Control, HandoffRecord
from durable_sessions.observability import metrics


def _run_crashed(sender: Any, session_id: uuid.UUID, escalated: bool, **kwargs: Any) -> None:
    metrics.run_crashed(escalated)


def _run_retried(sender: Any, session_id: uuid.UUID, reason: str, **kwargs: Any) -> None:
    metrics.run_retried(reason)


def _taken_over(sender: Any, session_id: uuid.UUID, **kwargs: Any) -> None:
    """How long the session waited in the queue, when it was taken from there."""
    if not metrics.enabled():
        return
    take_over, *earlier = (
        HandoffRecord.objects.filter(session_id=session_id)
        .order_by("-seq")
        .values_list("from_control", "to_control", "created_at")[:20]
    ) or [None]
    if take_over is None or take_over[0] != Control.QUEUED:
        return
    queued_at = next((at for _, to, at in earlier if to == Control.QUEUED), None)
    if queued_at is not None:
        metrics.queue_waited((take_over[2] - queued_at).total_seconds())


def connect() -> None:
    signals.run_crashed.connect(_run_crashed, dispatch_uid="ds-metrics-run-crashed")
    signals.run_retried.connect(_run_retried, dispatch_uid="ds-metrics-run-retried")
    signals.taken_over.connect(_taken_over, dispatch_uid="ds-metrics-taken-over")

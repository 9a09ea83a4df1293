"""Metrics read from the database at scrape time: what the sessions and runs are now.

Counting rows is the database's job, and the answer is the same whichever process is
scraped, so these gauges are not kept by each process (which in multiprocess mode would
add them up) but read once per scrape and reused for ``METRICS_STATE_CACHE_SECONDS``.
A failing read reports ``ds_state_up 0`` and no stale numbers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from django.db.models import Count, Max, OuterRef, Subquery
from django.utils import timezone

from durable_sessions.app_settings import ds_settings
from durable_sessions.models import (
    AgentRun,
    Control,
    DurableSession,
    HandoffRecord,
    MessagePart,
    PartState,
    RunStatus,
    Status,
)

logger = logging.getLogger(__name__)


def read_state() -> dict[str, Any]:
    """Sessions by control and status, active runs by status, and the queue's oldest."""
    sessions = {
        (row["control"], row["status"]): row["n"]
        for row in DurableSession.objects.order_by()
        .values("control", "status")
        .annotate(n=Count("id"))
    }
    runs = {
        row["status"]: row["n"]
        for row in AgentRun.objects.filter(
            status__in=(RunStatus.PENDING, RunStatus.RUNNING, RunStatus.AWAITING)
        )
        .order_by()
        .values("status")
        .annotate(n=Count("id"))
    }
    oldest_run = (
        AgentRun.objects.filter(status=RunStatus.PENDING)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    return {
        "sessions": sessions,
        "runs": runs,
        "queue_oldest_seconds": _queue_oldest_seconds(),
        "pending_run_oldest_seconds": _age(oldest_run),
        "approvals_pending": MessagePart.objects.filter(state=PartState.AWAITING_APPROVAL).count(),
    }


def _age(since: Any) -> float:
    return max((timezone.now() - since).total_seconds(), 0.0) if since else 0.0


def _queue_oldest_seconds() -> float:
    """How long the longest-waiting queued session has waited since it was queued."""
    queued_at = (
        HandoffRecord.objects.filter(session=OuterRef("pk"), to_control=Control.QUEUED)
        .order_by()
        .values("session")
        .annotate(at=Max("created_at"))
        .values("at")
    )
    oldest = (
        DurableSession.objects.filter(status=Status.OPEN, control=Control.QUEUED)
        .annotate(queued_at=Subquery(queued_at))
        .order_by("queued_at")
        .values_list("queued_at", "updated_at")
        .first()
    )
    if oldest is None:
        return 0.0
    return _age(oldest[0] or oldest[1])


class StateCollector:
    """A prometheus_client collector of :func:`read_state`, cached between scrapes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any] | None] = (0.0, None)

    def state(self) -> dict[str, Any] | None:
        with self._lock:
            at, state = self._cached
            if (
                state is not None
                and time.monotonic() - at < ds_settings.METRICS_STATE_CACHE_SECONDS
            ):
                return state
            try:
                state = read_state()
            except Exception as exc:  # the database is away: say so, report nothing stale
                logger.warning("metrics: the database could not be read (%s)", type(exc).__name__)
                self._cached = (0.0, None)
                return None
            self._cached = (time.monotonic(), state)
            return state

    def forget(self) -> None:
        with self._lock:
            self._cached = (0.0, None)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        state = self.state()
        up = GaugeMetricFamily("ds_state_up", "1 when the database-backed metrics were read.")
        up.add_metric([], 1 if state is not None else 0)
        yield up
        if state is None:
            return
        sessions = GaugeMetricFamily(
            "ds_sessions",
            "Sessions by control (ai, queued, human) and status.",
            labels=["control", "status"],
        )
        for control in Control.values:
            for status in Status.values:
                sessions.add_metric([control, status], state["sessions"].get((control, status), 0))
        yield sessions
        runs = GaugeMetricFamily(
            "ds_runs", "Agent runs waiting or running, by status.", labels=["status"]
        )
        for status in (RunStatus.PENDING, RunStatus.RUNNING):
            runs.add_metric([status], state["runs"].get(status, 0))
        yield runs
        yield GaugeMetricFamily(
            "ds_queue_oldest_wait_seconds",
            "Seconds the longest-waiting queued session has waited for a human (0: none).",
            value=state["queue_oldest_seconds"],
        )
        yield GaugeMetricFamily(
            "ds_pending_run_oldest_seconds",
            "Seconds the oldest pending run has waited for a worker (0: none).",
            value=state["pending_run_oldest_seconds"],
        )
        yield GaugeMetricFamily(
            "ds_approvals_pending",
            "Tool calls waiting for a person's approval.",
            value=state["approvals_pending"],
        )


collector = StateCollector()

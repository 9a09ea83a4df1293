"""Every Prometheus metric of the app, and the one-line calls that record them.

Metrics are created when this module is imported, with ``prometheus_client`` when it is
installed (the ``[metrics]`` extra). Without it, or with ``METRICS_ENABLED`` off, each
recording call returns after one check of a cached flag. With the environment variable
``PROMETHEUS_MULTIPROC_DIR`` set before the processes start, every process (Daphne
servers, ``run_agents`` workers) writes its values there and one scrape of any process
reports them all (prometheus_client's multiprocess mode).

State that lives in the database (sessions by control, runs waiting, the oldest queued
session) is not counted here: :mod:`durable_sessions.observability.state` reads it at
scrape time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.utils import timezone

from durable_sessions.app_settings import ds_settings
from durable_sessions.observability import tracing

logger = logging.getLogger(__name__)

try:
    import prometheus_client
except ImportError:  # the [metrics] extra is not installed
    prometheus_client = None  # type: ignore[assignment]

AVAILABLE = prometheus_client is not None

# Seconds: from a few milliseconds (a live delivery) to minutes (a long reply).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)


class _Noop:
    """Stands in for a metric when prometheus_client is missing."""

    def labels(self, *args: Any, **kwargs: Any) -> _Noop:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


def _metric(kind: str, name: str, doc: str, labels: Iterable[str] = (), **kwargs: Any) -> Any:
    if prometheus_client is None:
        return _Noop()
    return getattr(prometheus_client, kind)(name, doc, tuple(labels), **kwargs)


# --- transports -----------------------------------------------------------------------------
CONNECTIONS = _metric(
    "Gauge",
    "ds_connections",
    "Open websocket connections, by kind (customer, operator, console).",
    ["kind"],
    multiprocess_mode="livesum",
)
CONNECTIONS_OPENED = _metric(
    "Counter", "ds_connections_opened", "Websocket connections opened, by kind.", ["kind"]
)
FRAMES_REJECTED = _metric(
    "Counter",
    "ds_frames_rejected",
    "Client frames answered with an error frame, by error code.",
    ["code"],
)
REPLAY_PAGES = _metric(
    "Counter", "ds_replay_pages", "Pages of the log read to replay or catch up a connection."
)
REPLAY_EVENTS = _metric(
    "Counter", "ds_replay_events", "Events sent from the database (replay and catch-up)."
)
# --- delivery -------------------------------------------------------------------------------
RESYNC_READS = _metric(
    "Counter",
    "ds_resync_reads",
    "Connections the periodic resync check found behind and sent to the database.",
)
EVENTS_RECOVERED = _metric(
    "Counter",
    "ds_events_recovered",
    "Events a connection read from the database because their wake-up never came "
    "(source: gap, when a later event revealed it; resync, when the periodic check did).",
    ["source"],
)
DELIVERY_LAG = _metric(
    "Histogram",
    "ds_delivery_lag_seconds",
    "Seconds from an event's commit to its live delivery to a connection (sampled).",
    buckets=LATENCY_BUCKETS,
)
PRESENCE_ENTRIES = _metric(
    "Gauge",
    "ds_presence_entries",
    "Presence entries kept by the processes (one per connection present).",
    multiprocess_mode="livesum",
)
WAKEUPS_LOST = _metric(
    "Counter",
    "ds_wakeups_lost",
    "Wake-ups that could not be sent because the channel layer failed.",
)
# --- the write path -------------------------------------------------------------------------
GROUP_COMMIT_DELTAS = _metric(
    "Histogram",
    "ds_group_commit_deltas",
    "Deltas written by one group commit.",
    buckets=BATCH_BUCKETS,
)
GROUP_COMMIT_SECONDS = _metric(
    "Histogram",
    "ds_group_commit_seconds",
    "Seconds one group commit took, its wait for the database thread included.",
    buckets=LATENCY_BUCKETS,
)
STORAGE_RETRIES = _metric(
    "Counter",
    "ds_storage_retries",
    "Writes of the runtime retried because the database was unreachable.",
)
# --- agent runs -----------------------------------------------------------------------------
RUNS_FINISHED = _metric(
    "Counter",
    "ds_runs_finished",
    "Runs that ended, by status (completed, cancelled, failed, crashed).",
    ["status"],
)
RUN_DURATION = _metric(
    "Histogram",
    "ds_run_duration_seconds",
    "Seconds from a run's claim to its end, by status.",
    ["status"],
    buckets=DURATION_BUCKETS,
)
TIME_TO_FIRST_TOKEN = _metric(
    "Histogram",
    "ds_time_to_first_token_seconds",
    "Seconds from the message that started a run to the first text of its reply.",
    buckets=LATENCY_BUCKETS,
)
LEASE_EXPIRIES = _metric(
    "Counter", "ds_lease_expiries", "Runs reaped because their lease expired (a dead process)."
)
RUN_RETRIES = _metric(
    "Counter",
    "ds_run_retries",
    "Runs put back to pending for another worker, by reason (worker_lost, handed_back).",
    ["reason"],
)
CRASH_ESCALATIONS = _metric(
    "Counter",
    "ds_crash_escalations",
    "Sessions moved to the human queue because their agent crashed.",
)
# --- handoff --------------------------------------------------------------------------------
QUEUE_WAIT = _metric(
    "Histogram",
    "ds_queue_wait_seconds",
    "Seconds a session waited in the human queue before an operator took it over.",
    buckets=WAIT_BUCKETS,
)


class _Switch:
    """Whether to record: the library is there and ``METRICS_ENABLED`` is on (cached)."""

    value: bool | None = None


_switch = _Switch()


def enabled() -> bool:
    on = _switch.value
    if on is None:
        on = _switch.value = AVAILABLE and ds_settings.METRICS_ENABLED
    return on


@ds_settings.on_reload
def _forget() -> None:
    _switch.value = None


def _seconds_since(value: Any, now: datetime) -> float | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return max((now - value).total_seconds(), 0.0)


# --- the calls of the other layers -----------------------------------------------------------


def connection_opened(kind: str) -> str | None:
    """Count an open connection; returns what to hand to :func:`connection_closed`."""
    if not enabled():
        return None
    CONNECTIONS.labels(kind).inc()
    CONNECTIONS_OPENED.labels(kind).inc()
    return kind


def connection_closed(counted: str | None) -> None:
    """Uncount a connection, once: ``counted`` is what :func:`connection_opened` gave."""
    if counted is not None and AVAILABLE:
        CONNECTIONS.labels(counted).dec()


def frame_rejected(code: str) -> None:
    if enabled():
        FRAMES_REJECTED.labels(code).inc()


def replay_page(events: int) -> None:
    if enabled() and events:
        REPLAY_PAGES.inc()
        REPLAY_EVENTS.inc(events)


def resync_reads(connections: int) -> None:
    if enabled() and connections:
        RESYNC_READS.inc(connections)


def recovered(source: str, events: int) -> None:
    if enabled() and events > 0:
        EVENTS_RECOVERED.labels(source).inc(events)


# Deliveries are the one hot path (every wake-up, on every connection): at most one in
# each interval is observed, which bounds the cost whatever the load. An observation
# costs a few microseconds, more in multiprocess mode, where each value is a shared file.
LAG_SAMPLE_INTERVAL = 0.01


class _LagSample:
    next_at = 0.0


_lag_sample = _LagSample()


def delivered(frames: list[Mapping[str, Any]]) -> None:
    """A live wake-up reached a connection: how long after commit its newest event did
    (sampled: at most one delivery per ``LAG_SAMPLE_INTERVAL`` in each process)."""
    if not frames or not enabled():
        return
    now = time.monotonic()
    if now < _lag_sample.next_at:
        return
    _lag_sample.next_at = now + LAG_SAMPLE_INTERVAL
    at = frames[-1].get("at")
    if isinstance(at, str):
        try:
            DELIVERY_LAG.observe(max(time.time() - datetime.fromisoformat(at).timestamp(), 0.0))
        except ValueError:
            pass


def presence_joined() -> None:
    if enabled():
        PRESENCE_ENTRIES.inc()


def presence_left() -> None:
    if enabled():
        PRESENCE_ENTRIES.dec()


def wakeups_lost(count: int) -> None:
    if enabled():
        WAKEUPS_LOST.inc(count)


def group_commit(deltas: int, seconds: float) -> None:
    if enabled():
        GROUP_COMMIT_DELTAS.observe(deltas)
        GROUP_COMMIT_SECONDS.observe(seconds)


def storage_retry() -> None:
    if enabled():
        STORAGE_RETRIES.inc()


def run_finished(status: str, started_at: datetime | None) -> None:
    if enabled():
        RUNS_FINISHED.labels(status).inc()
        duration = _seconds_since(started_at, timezone.now())
        if duration is not None:
            RUN_DURATION.labels(status).observe(duration)


def first_token(run_created_at: datetime | None) -> None:
    if enabled():
        seconds = _seconds_since(run_created_at, timezone.now())
        if seconds is not None:
            TIME_TO_FIRST_TOKEN.observe(seconds)


def run_crashed(escalated: bool) -> None:
    if enabled():
        LEASE_EXPIRIES.inc()
        RUNS_FINISHED.labels("crashed").inc()
        if escalated:
            CRASH_ESCALATIONS.inc()


def run_retried(reason: str) -> None:
    if enabled():
        RUN_RETRIES.labels(reason).inc()
        if reason == "worker_lost":
            LEASE_EXPIRIES.inc()


def queue_waited(seconds: float) -> None:
    if enabled():
        QUEUE_WAIT.observe(max(seconds, 0.0))


class _GroupCommit:
    """Times one group commit (metric and span); see :func:`timed_group_commit`."""

    def __init__(self, deltas: int) -> None:
        self.deltas = deltas
        self.started = 0.0
        self.span: Any = None

    def __enter__(self) -> _GroupCommit:
        self.span = tracing.span("ds.group_commit", deltas=self.deltas)
        self.span.__enter__()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        group_commit(self.deltas, time.perf_counter() - self.started)
        self.span.__exit__(*exc)


def timed_group_commit(deltas: int) -> _GroupCommit:
    """``with timed_group_commit(len(batch)):`` around one group commit."""
    return _GroupCommit(deltas)

"""Metrics, health endpoints, structured logs and spans, in one process.

The end-to-end proofs (real servers and workers, multiprocess mode, outages) are in
tests/test_e2e_operations.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY

from durable_sessions import service
from durable_sessions.delivery import health
from durable_sessions.models import AgentRun, Control, HandoffRecord, ParticipantKind
from durable_sessions.observability import logs, metrics, state
from durable_sessions.runtime.worker import Worker
from durable_sessions.service import runs
from tests.factories import anonymous_session, make_user, open_ws
from tests.lossy_layer import use_lossy_layer

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async
REPLY = " ".join(f"word{i}" for i in range(40))
SECRET = "my card number is 4111 1111 1111 1111"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(autouse=True)
def _fresh_state():
    state.collector.forget()
    yield
    state.collector.forget()


# --- the scrape endpoint --------------------------------------------------------------------


def scrape(client: Client | None = None, **extra: str):
    return (client or Client()).get("/ds/metrics/", **extra)


def test_the_metrics_endpoint_answers_loopback_and_lists_the_app_metrics():
    anonymous_session()
    response = scrape()
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    for name in (
        "ds_connections",
        "ds_frames_rejected_total",
        "ds_group_commit_deltas_bucket",
        "ds_time_to_first_token_seconds_bucket",
        'ds_sessions{control="ai",status="open"} 1.0',
        "ds_state_up 1.0",
        "ds_approvals_pending 0.0",
    ):
        assert name in text, name


def test_a_tool_call_waiting_for_approval_counts_as_pending():
    from durable_sessions.service import parts

    session, _ = anonymous_session()
    reply = service.start_assistant_message(session.pk)
    call = parts.start_part(reply.pk, "tool_call", tool_name="refund_order")
    parts.tool_input_ready(call.pk, {"order_id": "1"}, approvers="any")
    assert "ds_approvals_pending 1.0" in scrape().content.decode()


def test_the_metrics_endpoint_refuses_other_addresses_unless_they_bring_the_token(ds_config):
    assert scrape(REMOTE_ADDR="10.1.2.3").status_code == 403
    ds_config(METRICS_TOKEN="s3cret-token")
    assert (
        scrape(REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200
    )
    assert scrape(REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    ds_config(METRICS_ALLOWED_IPS="10.0.0.0/8")
    assert scrape(REMOTE_ADDR="10.1.2.3").status_code == 200
    assert scrape(REMOTE_ADDR="192.168.1.1").status_code == 403


def test_metrics_turned_off_record_nothing_and_the_endpoint_says_so(ds_config):
    ds_config(METRICS_ENABLED=False)
    before = value("ds_frames_rejected_total", code="bad_json")
    metrics.frame_rejected("bad_json")
    assert value("ds_frames_rejected_total", code="bad_json") == before
    assert scrape().status_code == 404


def test_a_bad_network_in_the_allow_list_is_a_configuration_error(settings):
    from durable_sessions.checks import check_settings

    settings.DURABLE_SESSIONS = {"METRICS_ALLOWED_IPS": "10.0.0.0/8, not-an-address"}
    [error] = check_settings()
    assert "not-an-address" in error.msg


def test_the_database_gauges_are_cached_between_scrapes(ds_config):
    ds_config(METRICS_STATE_CACHE_SECONDS=3600)
    anonymous_session()
    assert 'ds_sessions{control="ai",status="open"} 1.0' in scrape().content.decode()
    anonymous_session("visitor-2")
    assert 'ds_sessions{control="ai",status="open"} 1.0' in scrape().content.decode()
    state.collector.forget()
    assert 'ds_sessions{control="ai",status="open"} 2.0' in scrape().content.decode()


def test_the_queue_gauges_and_the_waiting_time_of_a_taken_over_session():
    session, _ = anonymous_session()
    customer = service.participant_for(session.id, ParticipantKind.CUSTOMER)
    service.request_handoff(session.id, by=customer, reason="a human please")
    HandoffRecord.objects.filter(session=session, to_control=Control.QUEUED).update(
        created_at=timezone.now() - timedelta(seconds=90)
    )
    found = state.read_state()
    assert found["sessions"][(Control.QUEUED, "open")] == 1
    assert 89 < found["queue_oldest_seconds"] < 200
    waits = value("ds_queue_wait_seconds_count")
    long_waits = waits - value("ds_queue_wait_seconds_bucket", le="60.0")
    service.take_over(session.id, make_user("olga", operator=True))
    assert value("ds_queue_wait_seconds_count") == waits + 1
    # It waited about 90 s: counted above the 60 s bucket.
    assert (
        value("ds_queue_wait_seconds_count") - value("ds_queue_wait_seconds_bucket", le="60.0")
        == long_waits + 1
    )
    assert state.read_state()["queue_oldest_seconds"] == 0.0


# --- counters moved by the transports, delivery and runtime ----------------------------------


async def test_connections_rejected_frames_and_replays_are_counted():
    session, store = await db(anonymous_session)()
    open_before = value("ds_connections", kind="customer")
    replayed = value("ds_replay_events_total")
    rejected = value("ds_frames_rejected_total", code="bad_json")
    comm, _ = await open_ws(session.id, store=store)
    assert value("ds_connections", kind="customer") == open_before + 1
    assert value("ds_replay_events_total") >= replayed + 1  # session.created
    await comm.send_to(text_data="{not json")
    frame = await comm.receive_json_from(timeout=5)
    assert frame["code"] == "bad_json"
    assert value("ds_frames_rejected_total", code="bad_json") == rejected + 1
    await comm.disconnect()
    assert value("ds_connections", kind="customer") == open_before


async def test_events_whose_wake_up_was_lost_are_counted_as_recovered(settings):
    use_lossy_layer(settings, drop=1.0)
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    recovered = value("ds_events_recovered_total", source="resync")
    reads = value("ds_resync_reads_total")
    customer = await db(service.participant_for)(session.id, ParticipantKind.CUSTOMER)
    await service.apost_message(session.id, author=customer, content="only one", client_id="1")
    frame = await comm.receive_json_from(timeout=5)  # through the periodic resync
    assert frame["seq"] == 2
    assert value("ds_events_recovered_total", source="resync") == recovered + 1
    assert value("ds_resync_reads_total") >= reads + 1
    await comm.disconnect()


async def test_a_run_moves_the_run_and_group_commit_metrics(settings, caplog):
    settings.DURABLE_SESSIONS = {
        "RUNNER": "worker",
        "RESYNC_INTERVAL": 0.2,
        "FLUSH_INTERVAL_MS": 20,
        "AGENT_OPTIONS": {"thinking_seconds": 0, "tokens_per_second": 0, "reply": REPLY},
    }
    completed = value("ds_runs_finished_total", status="completed")
    first_tokens = value("ds_time_to_first_token_seconds_count")
    commits = value("ds_group_commit_deltas_count")
    deltas = value("ds_group_commit_deltas_sum")
    lag = value("ds_delivery_lag_seconds_count")
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    worker = Worker("metrics-worker")
    worker.start()
    try:
        caplog.set_level(logging.INFO, logger="durable_sessions")
        await comm.send_json_to({"type": "message.send", "content": SECRET, "client_id": "c1"})
        while (await comm.receive_json_from(timeout=10)).get("type") != "message.completed":
            pass
        for _ in range(100):
            if value("ds_runs_finished_total", status="completed") > completed:
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
    assert value("ds_runs_finished_total", status="completed") == completed + 1
    assert value("ds_run_duration_seconds_count", status="completed") >= 1
    assert value("ds_time_to_first_token_seconds_count") == first_tokens + 1
    assert value("ds_group_commit_deltas_count") > commits
    assert value("ds_group_commit_deltas_sum") > deltas
    assert value("ds_delivery_lag_seconds_count") > lag
    await comm.disconnect()
    # Nothing a person wrote, nor the reply, reaches the logs at INFO and above.
    assert SECRET not in caplog.text and "word7" not in caplog.text


def _dead_run(session) -> AgentRun:
    customer = service.participant_for(session.id, ParticipantKind.CUSTOMER)
    trigger = service.post_message(session.id, author=customer, content="hi").message
    run = AgentRun.objects.get(trigger=trigger)
    runs.claim(run.pk, "dead-worker")
    AgentRun.objects.filter(pk=run.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    return run


async def test_a_reaped_run_counts_a_lease_expiry_and_an_escalation(settings):
    settings.DURABLE_SESSIONS = {"RUN_MAX_ATTEMPTS": 1}
    session, _ = await db(anonymous_session)()
    await db(_dead_run)(session)
    expiries = value("ds_lease_expiries_total")
    escalations = value("ds_crash_escalations_total")
    await Worker("reaper").sweep_once()
    assert value("ds_lease_expiries_total") == expiries + 1
    assert value("ds_crash_escalations_total") == escalations + 1
    assert value("ds_runs_finished_total", status="crashed") >= 1


async def test_a_retried_run_counts_a_lease_expiry_and_a_retry():
    session, _ = await db(anonymous_session)()
    run = await db(_dead_run)(session)
    expiries = value("ds_lease_expiries_total")
    retries = value("ds_run_retries_total", reason="worker_lost")
    escalations = value("ds_crash_escalations_total")
    assert await service.acrash_run(run.pk)  # RUN_MAX_ATTEMPTS 2: pending again
    assert value("ds_lease_expiries_total") == expiries + 1
    assert value("ds_run_retries_total", reason="worker_lost") == retries + 1
    assert value("ds_crash_escalations_total") == escalations


# --- health ---------------------------------------------------------------------------------


def test_liveness_and_readiness_answer_when_everything_is_reachable():
    client = Client()
    assert client.get("/ds/health/live/").json() == {"status": "ok"}
    response = client.get("/ds/health/ready/")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "channel_layer": "ok", "presence": "ok"},
    }
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_readiness_fails_without_naming_the_cause_and_logs_it_once(monkeypatch, caplog):
    async def unreachable() -> None:
        raise OSError("connection refused by db.internal:5432")

    monkeypatch.setitem(health.CHECKS, "database", unreachable)
    client = Client()
    with caplog.at_level(logging.WARNING, logger="durable_sessions.delivery.health"):
        first = client.get("/ds/health/ready/")
        client.get("/ds/health/ready/")
    assert first.status_code == 503
    assert first.json()["checks"]["database"] == "failed"
    assert "db.internal" not in first.content.decode()
    assert [r.getMessage() for r in caplog.records].count(
        "readiness: database failed (OSError: connection refused by db.internal:5432)"
    ) == 1
    monkeypatch.undo()
    with caplog.at_level(logging.WARNING, logger="durable_sessions.delivery.health"):
        assert client.get("/ds/health/ready/").status_code == 200
    assert "readiness: database available again" in caplog.text


def test_health_endpoints_take_get_only():
    assert Client().post("/ds/health/ready/").status_code == 405


# --- logs -----------------------------------------------------------------------------------


async def test_json_lines_carry_the_bound_context_and_no_text():
    formatter = logs.JsonFormatter()
    context_filter = logs.ContextFilter()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("durable_sessions.test_component")
    handler = Keep()
    handler.addFilter(context_filter)
    logger.addHandler(handler)
    try:

        async def component() -> None:
            logs.bind(session_id="0b7e", run_id=42)
            logger.warning("run %s stopped", 42, extra={"seq": 7})
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("failed")

        await asyncio.create_task(component())
        logger.warning("outside")  # the task's context stays in the task
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(formatter.format(r)) for r in records]
    assert lines[0] == {
        "time": lines[0]["time"],
        "level": "WARNING",
        "logger": "durable_sessions.test_component",
        "message": "run 42 stopped",
        "session_id": "0b7e",
        "run_id": 42,
        "seq": 7,
    }
    assert lines[1]["exception"] == "ValueError" and "boom" in lines[1]["traceback"]
    assert "session_id" not in lines[2]


# --- spans ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def span_exporter():
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


async def test_a_run_is_traced_with_its_stream_and_group_commits(settings, span_exporter):
    settings.DURABLE_SESSIONS = {
        "RUNNER": "worker",
        "TRACING": True,
        "AGENT_OPTIONS": {"thinking_seconds": 0, "tokens_per_second": 0, "reply": REPLY},
    }
    span_exporter.clear()
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    worker = Worker("traced-worker")
    worker.start()
    try:
        await comm.send_json_to({"type": "message.send", "content": "hi", "client_id": "c1"})
        while (await comm.receive_json_from(timeout=10)).get("type") != "message.completed":
            pass
        for _ in range(100):
            if any(s.name == "ds.run" for s in span_exporter.get_finished_spans()):
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
        await comm.disconnect()
    spans = {s.name: s for s in span_exporter.get_finished_spans()}
    run, stream = spans["ds.run"], spans["ds.agent.stream"]
    assert run.attributes["ds.session_id"] == str(session.id)
    assert stream.parent.span_id == run.context.span_id
    assert spans["ds.group_commit"].attributes["ds.deltas"] >= 1


async def test_a_tool_call_is_a_span_inside_the_agent_stream(settings, span_exporter):
    settings.DURABLE_SESSIONS = {
        "RUNNER": "worker",
        "TRACING": True,
        "AGENT_OPTIONS": {"thinking_seconds": 0, "tokens_per_second": 0},
    }
    span_exporter.clear()
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    worker = Worker("traced-worker")
    worker.start()
    try:
        await comm.send_json_to(
            {"type": "message.send", "content": "where is order 1001?", "client_id": "c1"}
        )
        while (await comm.receive_json_from(timeout=10)).get("type") != "message.completed":
            pass
        for _ in range(100):
            if any(s.name == "ds.run" for s in span_exporter.get_finished_spans()):
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
        await comm.disconnect()
    spans = {s.name: s for s in span_exporter.get_finished_spans()}
    call, stream = spans["ds.tool_call"], spans["ds.agent.stream"]
    assert call.attributes["ds.tool"] == "order_status"
    assert call.attributes["ds.session_id"] == str(session.id)
    assert call.parent.span_id == stream.context.span_id


async def test_requests_and_connections_get_a_span_with_the_session_id(ds_config, span_exporter):
    from durable_sessions.observability.asgi import TracingMiddleware

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request"}

    session_id = "0b7e6c3e-3f7e-4a57-9d7a-2d2f4b1c6a10"
    scope = {"type": "http", "method": "GET", "path": f"/ds/sessions/{session_id}/events/"}
    span_exporter.clear()
    await TracingMiddleware(app)(scope, receive, send)
    assert span_exporter.get_finished_spans() == ()  # TRACING is off
    ds_config(TRACING=True)
    await TracingMiddleware(app)(scope, receive, send)
    [span] = span_exporter.get_finished_spans()
    assert span.name == "HTTP GET /ds/sessions/{session_id}/events/"
    assert span.attributes["ds.session_id"] == session_id
    assert span.attributes["http.response.status_code"] == 204
    assert [m["type"] for m in sent].count("http.response.start") == 2


def test_several_processes_without_multiprocess_mode_are_warned_at_deploy(ds_config, monkeypatch):
    from durable_sessions.checks import check_metrics_processes

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert check_metrics_processes() == []
    ds_config(PROCESSES=3)
    [warning] = check_metrics_processes()
    assert warning.id == "durable_sessions.W030"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/ds-metrics")
    assert check_metrics_processes() == []
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    ds_config(METRICS_ENABLED=False)
    assert check_metrics_processes() == []

"""``manage.py ds_doctor`` passes a sound deployment and names what is broken."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from durable_sessions import service
from durable_sessions.models import AgentRun, Event, HandoffRecord, ParticipantKind, RunStatus
from durable_sessions.service import compaction, runs
from tests.factories import anonymous_session

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_demo_application_left_imported():
    """The doctor runs the system checks, whose W008 imports the ASGI module to see that
    it builds an EmbeddedRunner: leave no import of it behind for later checks."""
    cached = "project.asgi" in sys.modules
    yield
    if not cached:
        sys.modules.pop("project.asgi", None)


def doctor(*args: str) -> tuple[list[dict], bool]:
    """The findings (JSON) and whether the command failed."""
    out = StringIO()
    failed = False
    try:
        call_command("ds_doctor", "--json", "--no-cross-process", *args, stdout=out)
    except CommandError as error:
        failed = True
        assert error.returncode == 1
    return json.loads(out.getvalue()), failed


def problems(findings: list[dict]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for finding in findings:
        if finding["level"] == "fail":
            found.setdefault(finding["area"], []).append(finding["text"])
    return found


def test_a_sound_single_process_deployment_passes(ds_config):
    ds_config(RUNNER="embedded")
    anonymous_session()
    findings, failed = doctor()
    assert problems(findings) == {}
    assert not failed
    areas = {f["area"] for f in findings}
    assert {"settings", "database", "channel layer", "clocks", "event log", "runs"} <= areas


def test_several_processes_on_the_in_memory_layer_and_sqlite_are_refused(ds_config):
    ds_config(RUNNER="worker", PROCESSES=2)
    findings, failed = doctor()
    found = problems(findings)
    assert failed
    assert "reaches this process only" in found["channel layer"][0]
    if connection.vendor == "sqlite":
        assert any("SQLite" in text for text in found["database"])
    fixes = [f["fix"] for f in findings if f["level"] == "fail"]
    assert all(fixes)  # every problem says what to do


def test_an_invalid_setting_is_reported_with_its_key(settings):
    settings.DURABLE_SESSIONS = {"RUNNER": "embedded", "HEARTBEAT_INTERVAL": 10.0}
    findings, failed = doctor()
    assert failed
    assert "HEARTBEAT_INTERVAL" in problems(findings)["settings"][0]


def _stuck_run() -> AgentRun:
    """A run whose process died and which no worker reaped."""
    session, _ = anonymous_session()
    customer = service.participant_for(session.id, ParticipantKind.CUSTOMER)
    trigger = service.post_message(session.id, author=customer, content="hi").message
    run = AgentRun.objects.get(trigger=trigger)
    runs.claim(run.pk, "gone-worker")
    AgentRun.objects.filter(pk=run.pk).update(
        lease_expires_at=timezone.now() - timedelta(minutes=5)
    )
    return run


def test_a_stuck_run_and_a_waiting_run_are_found(ds_config):
    ds_config(RUNNER="embedded")
    run = _stuck_run()
    session, _ = anonymous_session("visitor-2")
    customer = service.participant_for(session.id, ParticipantKind.CUSTOMER)
    service.post_message(session.id, author=customer, content="anyone?")
    AgentRun.objects.filter(status=RunStatus.PENDING).update(
        created_at=timezone.now() - timedelta(minutes=10)
    )
    findings, failed = doctor()
    assert failed
    texts = problems(findings)["runs"]
    assert any(f"run {run.pk} of worker gone-worker" in t for t in texts)
    assert any("pending for more than 60 s" in t for t in texts)


def test_a_gap_in_a_session_log_is_found(ds_config):
    ds_config(RUNNER="embedded")
    session, _ = anonymous_session()
    customer = service.participant_for(session.id, ParticipantKind.CUSTOMER)
    service.post_message(session.id, author=customer, content="one")
    Event.objects.filter(session=session, seq=2).delete()
    findings, failed = doctor()
    assert failed
    assert str(session.id) in problems(findings)["event log"][0]


def test_a_compacted_log_is_not_a_gap_but_a_deleted_snapshot_seq_is(ds_config):
    ds_config(RUNNER="embedded")
    session, _ = anonymous_session()
    reply = service.start_assistant_message(session.id)
    for word in ("a ", "b ", "c"):
        service.append_delta(reply, word)
    service.finish_assistant_message(reply)
    assert compaction.compact_message(reply.pk).deleted == 2
    findings, _ = doctor()
    assert "event log" not in problems(findings)
    Event.objects.filter(session=session, type="message.snapshot").delete()
    findings, failed = doctor()
    assert failed
    assert str(session.id) in problems(findings)["event log"][0]


def test_bad_options_are_refused_before_any_check():
    with pytest.raises(CommandError, match="must be > 0"):
        call_command("ds_doctor", "--stuck-after", "0", stdout=StringIO())


def test_the_text_report_shows_each_problem_and_its_fix(ds_config):
    ds_config(RUNNER="worker", PROCESSES=2)
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("ds_doctor", "--no-cross-process", stdout=out)
    text = out.getvalue()
    assert "[FAIL] channel layer:" in text
    assert "fix: use channels-redis" in text


def test_the_channel_layer_is_checked_from_another_process(settings, ds_config, redis_url):
    """With Redis, another process started by the doctor must reach this one."""
    from channels.layers import channel_layers

    from project.env import channel_layers_from_url

    settings.CHANNEL_LAYERS = channel_layers_from_url(redis_url)  # what the child reads
    channel_layers.backends.clear()
    ds_config(RUNNER="embedded")
    out = StringIO()
    try:
        call_command("ds_doctor", "--json", stdout=out)
    except CommandError:
        pass  # SQLite with Redis may be refused: only the layer's finding matters here
    [layer] = [f for f in json.loads(out.getvalue()) if f["area"] == "channel layer"]
    assert layer == {
        "area": "channel layer",
        "level": "ok",
        "text": "RedisPubSubLayer: round trip from another process",
        "fix": "",
    }


def test_a_session_waiting_long_in_the_queue_is_reported_once_it_waited_long(ds_config):
    ds_config(RUNNER="embedded")
    session, _ = anonymous_session()
    customer = service.participant_for(session.id, ParticipantKind.CUSTOMER)
    service.request_handoff(session.id, by=customer, reason="a person please")
    findings, _ = doctor()
    assert [f["level"] for f in findings if f["area"] == "claims"] == ["ok"]
    HandoffRecord.objects.filter(session=session).update(
        created_at=timezone.now() - timedelta(hours=1)
    )
    findings, _ = doctor()
    [waiting] = [f for f in findings if f["area"] == "claims"]
    assert waiting["level"] == "warn"
    assert "1 session(s) queued for a human" in waiting["text"]

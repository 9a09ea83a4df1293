"""The embedded runner starts the process's worker with the server, not with a client."""

from __future__ import annotations

import asyncio

import pytest

from durable_sessions.runtime import embedded

# Neither the database nor a channel layer backend: the PostgreSQL + Redis pass skips it.
pytestmark = pytest.mark.neutral


async def test_the_worker_starts_on_lifespan_startup_and_stops_on_shutdown(settings):
    settings.DURABLE_SESSIONS = {**settings.DURABLE_SESSIONS, "RUNNER": "embedded"}
    calls = []

    async def app(scope, receive, send):  # never reached by lifespan events
        calls.append(scope["type"])

    runner = embedded.EmbeddedRunner(app)
    inbox: asyncio.Queue = asyncio.Queue()
    sent = []

    async def send(message):
        sent.append(message["type"])

    await inbox.put({"type": "lifespan.startup"})
    await inbox.put({"type": "lifespan.shutdown"})
    worker = None

    async def receive():
        nonlocal worker
        message = await inbox.get()
        if message["type"] == "lifespan.shutdown":
            worker = embedded._worker
            assert worker is not None and worker.running
        return message

    await runner({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert calls == [] and not worker.running


async def test_with_runs_in_worker_processes_the_wrapper_starts_nothing(settings):
    settings.DURABLE_SESSIONS = {**settings.DURABLE_SESSIONS, "RUNNER": "worker"}
    embedded._worker = None
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    await embedded.EmbeddedRunner(app)({"type": "http"}, None, None)
    assert seen == ["http"] and embedded._worker is None


def test_a_check_warns_when_the_embedded_runner_is_missing(settings, monkeypatch):
    from durable_sessions.checks import check_embedded_runner

    settings.DURABLE_SESSIONS = {**settings.DURABLE_SESSIONS, "RUNNER": "embedded"}
    monkeypatch.setattr(embedded.EmbeddedRunner, "constructed", False)
    settings.ASGI_APPLICATION = "tests.asgi_apps.bare.application"
    assert [w.id for w in check_embedded_runner()] == ["durable_sessions.W008"]
    settings.ASGI_APPLICATION = "project.asgi.application"
    assert check_embedded_runner() == []
    settings.DURABLE_SESSIONS = {**settings.DURABLE_SESSIONS, "RUNNER": "worker"}
    monkeypatch.setattr(embedded.EmbeddedRunner, "constructed", False)
    assert check_embedded_runner() == []

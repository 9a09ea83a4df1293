from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from channels.layers import channel_layers

from tests import hypothesis_profiles, services

assert hypothesis_profiles.PROFILE  # loaded before any test module builds its settings

IN_MEMORY = {"default": {"BACKEND": "durable_sessions.delivery.layers.LocalChannelLayer"}}
# Every test starts from these; agents run only in the tests that start a worker (see
# tests/test_runtime.py).
BASE_DURABLE_SESSIONS = {"RESYNC_INTERVAL": 0.2, "RUNNER": "worker"}

SettingsMerger = Callable[..., None]


@pytest.fixture(autouse=True)
def _in_process_layer(settings):
    """In-process tests use a fresh in-memory layer (Redis is for multi-process tests)."""
    settings.CHANNEL_LAYERS = IN_MEMORY
    settings.DURABLE_SESSIONS = dict(BASE_DURABLE_SESSIONS)
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def merge_setting(settings: Any, name: str, keys: dict[str, Any]) -> None:
    """Set ``keys`` in the dict setting ``name`` for this test, keeping its other keys.

    A new dict is assigned, so Django's ``setting_changed`` fires and the cached values
    reload; the ``settings`` fixture restores the original after the test.
    """
    current = getattr(settings, name, None) or {}
    setattr(settings, name, {**current, **keys})


@pytest.fixture
def ds_config(settings) -> SettingsMerger:
    """``ds_config(KEY=value, ...)``: merge keys into this test's ``DURABLE_SESSIONS``."""
    return lambda **keys: merge_setting(settings, "DURABLE_SESSIONS", keys)


@pytest.fixture
def console_config(settings) -> SettingsMerger:
    """``console_config(KEY=value, ...)``: merge keys into this test's ``HANDOFF_CONSOLE``."""
    return lambda **keys: merge_setting(settings, "HANDOFF_CONSOLE", keys)


@pytest.fixture
def postgres():
    services.require_postgres()


@pytest.fixture
def redis_url() -> str:
    url = services.require_redis()
    # Tests reuse visitor ids and user ids: limits counted in Redis by earlier tests (or
    # runs) must not refuse this one.
    import redis

    client = redis.Redis.from_url(url)
    stale = list(client.scan_iter(match="ds:limit:*"))
    if stale:
        client.delete(*stale)
    client.close()
    return url


_SERVICE_MARKERS = {"postgres": "postgres", "redis_url": "redis"}


# A test that uses any of these depends on the backends: it cannot be ``neutral``.
_BACKEND_MARKERS = {"django_db", "postgres", "redis", "e2e", "browser"}
_BACKEND_FIXTURES = {"db", "transactional_db", "admin_client", "live_server", "daphne"}


def pytest_collection_modifyitems(config, items):
    """Tests that use a service fixture carry its marker, so ``-m`` can select them."""
    for item in items:
        for fixture, marker in _SERVICE_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(getattr(pytest.mark, marker))
        if item.get_closest_marker("neutral"):
            # CI skips neutral tests on its PostgreSQL + Redis pass: one that reaches a
            # backend would go unproven there.
            marks = {mark.name for mark in item.iter_markers()}
            uses = (marks & _BACKEND_MARKERS) | (
                set(getattr(item, "fixturenames", ())) & _BACKEND_FIXTURES
            )
            if uses:
                raise pytest.UsageError(f"{item.nodeid} is marked neutral but uses {sorted(uses)}")


@pytest.fixture
def daphne():
    """Factory of real Daphne processes on the test database; all stopped afterwards."""
    from tests.live import DaphneServer

    started: list[DaphneServer] = []

    def start(env: dict[str, str], port: int | None = None) -> DaphneServer:
        server = DaphneServer(env, port).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def agent_worker():
    """Factory of ``manage.py run_agents`` processes; all stopped afterwards."""
    from tests.live import AgentWorker

    started: list[AgentWorker] = []

    def start(env: dict[str, str], name: str) -> AgentWorker:
        worker = AgentWorker(env, name).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


# Debian's Chromium, headless, with nothing that would reach out to the network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture
async def browser():
    """A headless Chromium for Playwright (skips, or fails in CI, when it is missing)."""
    from playwright.async_api import async_playwright

    executable = services.require_chromium()
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()

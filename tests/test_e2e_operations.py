"""Operating real processes: metrics scraped during a real run, readiness through outages.

Two Daphne servers and a ``run_agents`` worker share PostgreSQL, Redis and one
``PROMETHEUS_MULTIPROC_DIR``: a scrape of any of them reports the counters of all
(prometheus_client's multiprocess mode), and the open connections of a killed server
stop being counted. Readiness of a server and of a worker's health port fails while
PostgreSQL or Redis is away (cut by :class:`tests.faults.FaultProxy`, as a restart does)
and recovers when it returns. Nothing about speed is asserted; deadlines only keep a
failing test from hanging.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import anonymous_session
from tests.faults import FaultProxy
from tests.live import AgentWorker, free_port, server_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.timeout(150)]

db = database_sync_to_async
REPLY = " ".join(f"w{i}" for i in range(60))
AGENT = {"thinking_seconds": 0, "tokens_per_second": 200, "reply": REPLY}


class HealthyWorker(AgentWorker):
    """A ``run_agents`` worker with its health port open on loopback."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        self.health_port = free_port()
        super().__init__(env, name)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def command(self) -> list[str]:
        return [
            *super().command(),
            *("--health-port", str(self.health_port), "--health-host", "127.0.0.1"),
        ]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(base: str, path: str = "/ds/metrics/") -> Samples:
    async with httpx.AsyncClient(base_url=base, timeout=20) as http:
        response = await http.get(path)
    assert response.status_code == 200, response.text
    found: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 60) -> bool:
    for _ in range(int(seconds / 0.25)):
        if await check():
            return True
        await asyncio.sleep(0.25)
    return False


async def connect(server: Any, session_id: Any, cookie: str) -> Any:
    ws = await websockets.connect(
        f"{server.ws}/ws/sessions/{session_id}/?after_seq=0",
        origin=server.http,
        additional_headers={"Cookie": cookie},
    )
    await read_until(ws, lambda f: f.get("type") == "live")
    return ws


async def read_until(ws: Any, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            frame = json.loads(await ws.recv())
            if predicate(frame):
                return frame


async def test_a_scrape_of_any_process_reports_every_process_during_a_real_run(
    daphne, postgres, redis_url, tmp_path
):
    env = server_env(redis_url=redis_url, ds_settings={"RUNNER": "worker", "AGENT_OPTIONS": AGENT})
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    a, b = daphne(env), daphne(env)
    worker = HealthyWorker(env, "metrics-worker").start()
    try:
        session, store = await db(anonymous_session)()
        cookie = f"sessionid={store.session_key}"
        ws_a, ws_b = await connect(a, session.id, cookie), await connect(b, session.id, cookie)
        samples = await scrape(a.http)
        assert sample(samples, "ds_connections", kind="customer") == 2  # one on each server
        assert sample(samples, "ds_replay_events_total") >= 2
        assert sample(samples, "ds_sessions", control="ai", status="open") >= 1

        await ws_a.send(json.dumps({"type": "message.send", "content": "hi", "client_id": "1"}))
        for ws in (ws_a, ws_b):
            await read_until(ws, lambda f: f.get("type") == "message.completed")
        await ws_b.send("{not json")
        assert (await read_until(ws_b, lambda f: f.get("type") == "error"))["code"] == "bad_json"

        async def run_counted() -> bool:
            found = await scrape(b.http)
            return sample(found, "ds_runs_finished_total", status="completed") >= 1

        assert await until(run_counted)
        samples = await scrape(b.http)
        # The worker's process ran the agent and wrote the deltas ...
        assert sample(samples, "ds_time_to_first_token_seconds_count") >= 1
        assert sample(samples, "ds_run_duration_seconds_count", status="completed") >= 1
        assert sample(samples, "ds_group_commit_deltas_count") >= 1
        assert sample(samples, "ds_group_commit_deltas_sum") >= 1
        # ... both servers delivered them live, and the refused frame was counted once.
        assert sample(samples, "ds_delivery_lag_seconds_count") >= 2
        assert sample(samples, "ds_frames_rejected_total", code="bad_json") == 1
        # The worker's own port reports the same shared counters.
        from_worker = await scrape(worker.http, "/metrics/")
        assert sample(from_worker, "ds_runs_finished_total", status="completed") >= 1

        await ws_a.close()

        async def one_left() -> bool:
            return sample(await scrape(b.http), "ds_connections", kind="customer") == 1

        assert await until(one_left)
        b.kill()  # its connection is never closed: the gauge of a dead process is dropped

        async def none_left() -> bool:
            return sample(await scrape(a.http), "ds_connections", kind="customer") == 0

        assert await until(none_left)
    finally:
        worker.stop()


async def ready(base: str, path: str) -> tuple[int, dict[str, Any]]:
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            response = await http.get(path)
    except httpx.HTTPError:
        return 0, {}
    return response.status_code, response.json()


async def test_readiness_fails_while_the_database_or_redis_is_away_and_recovers(
    daphne, postgres, redis_url
):
    settings_db = connection.settings_dict
    pg = FaultProxy(settings_db["HOST"] or "127.0.0.1", int(settings_db["PORT"] or 5432)).start()
    redis_parts = urlsplit(redis_url)
    redis = FaultProxy(redis_parts.hostname or "127.0.0.1", redis_parts.port or 6379).start()
    worker = None
    try:
        env = server_env(
            redis_url=f"redis://127.0.0.1:{redis.port}{redis_parts.path or '/0'}",
            ds_settings={"RUNNER": "worker", "HEALTH_CHECK_TIMEOUT": 1.0},
        )
        db_url = urlsplit(env["DATABASE_URL"])
        env["DATABASE_URL"] = db_url._replace(
            netloc=f"{db_url.username}@127.0.0.1:{pg.port}"
        ).geturl()
        server = daphne(env)
        worker = HealthyWorker(env, "health-worker").start()
        probes = [(server.http, "/ds/health/ready/"), (worker.http, "/health/ready/")]

        async def all_ready() -> bool:
            statuses = [(await ready(*probe))[0] for probe in probes]
            return statuses == [200] * len(probes)

        def failing(check: str) -> Callable[[], Awaitable[bool]]:
            async def probe() -> bool:
                for base, path in probes:
                    status, body = await ready(base, path)
                    if status != 503 or body["checks"][check] != "failed":
                        return False
                return True

            return probe

        assert await until(all_ready)
        async with httpx.AsyncClient(base_url=server.http) as http:
            assert (await http.get("/ds/health/live/")).json() == {"status": "ok"}

        # Each outage lasts until every process's readiness reports it, then ends: a
        # PostgreSQL restart, then a Redis one, as their clients see them.
        pg.outage(120.0)
        assert await until(failing("database"), 60), "readiness never saw the database go"
        pg.restore()
        assert await until(all_ready, 60), "readiness never recovered after the database"

        redis.outage(120.0)
        assert await until(failing("presence"), 60), "readiness never saw Redis go"
        _, body = await ready(server.http, "/ds/health/ready/")
        assert body["checks"]["database"] == "ok"
        redis.restore()
        assert await until(all_ready, 60), "readiness never recovered after Redis"
        async with httpx.AsyncClient(base_url=worker.http) as http:
            assert (await http.get("/health/live/")).json() == {"status": "ok"}
    finally:
        if worker is not None:
            worker.stop()
        pg.stop()
        redis.stop()

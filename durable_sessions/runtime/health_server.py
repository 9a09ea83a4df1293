"""Health of a ``run_agents`` worker, for probes: a small HTTP port and a heartbeat file.

A worker serves no HTTP otherwise, so ``run_agents --health-port 9100`` opens a minimal
server (GET only, no keep-alive) that answers ``/health/live/`` (200 while the worker's
loops run), ``/health/ready/`` (the readiness checks of the servers) and ``/metrics/``
(this process's metrics, or all processes' in multiprocess mode; same access rules as
the servers' endpoint). ``--heartbeat-file PATH`` touches a file every sweep interval
while the worker runs, for an exec probe that checks its age.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.health import readiness
from durable_sessions.observability import exposition, metrics

logger = logging.getLogger(__name__)

# A request line and headers larger than this are refused.
MAX_REQUEST_BYTES = 8192
READ_TIMEOUT = 5.0

_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


class HealthServer:
    """Serves the worker's probes on ``host:port``; ``alive`` says whether it works."""

    def __init__(self, host: str, port: int, alive: Callable[[], bool]) -> None:
        self.host, self.port, self.alive = host, port, alive
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        sockets = self._server.sockets or ()
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            status, content_type, body = await self._answer(head, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            status, content_type, body = 400, "text/plain", b"bad request\n"
        except Exception:
            logger.exception("health port: request failed")
            status, content_type, body = 503, "text/plain", b"unavailable\n"
        with contextlib.suppress(ConnectionError):
            writer.write(
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()

    async def _answer(self, head: bytes, writer: asyncio.StreamWriter) -> tuple[int, str, bytes]:
        if len(head) > MAX_REQUEST_BYTES:
            raise ValueError("request too large")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        )
        if method != "GET":
            return 405, "text/plain", b"GET only\n"
        path = target.split("?", 1)[0].rstrip("/") + "/"
        if path == "/health/live/":
            ok = self.alive()
            return _json(200 if ok else 503, {"status": "ok" if ok else "stopped"})
        if path == "/health/ready/":
            checks = await readiness()
            ok = all(c.ok for c in checks) and self.alive()
            return _json(
                200 if ok else 503,
                {
                    "status": "ready" if ok else "unavailable",
                    "checks": {c.name: "ok" if c.ok else "failed" for c in checks},
                },
            )
        if path == "/metrics/":
            peer = writer.get_extra_info("peername") or ("", 0)
            if not exposition.scraper_allowed(headers.get("authorization", ""), peer[0]):
                return 403, "text/plain", b"metrics: not allowed from here\n"
            if not metrics.AVAILABLE or not ds_settings.METRICS_ENABLED:
                return 404, "text/plain", b"metrics: off\n"
            return 200, exposition.CONTENT_TYPE, exposition.render()
        return 404, "text/plain", b"not found\n"


def _json(status: int, data: object) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(data).encode()


def _touch(path: Path) -> None:
    path.touch()
    os.utime(path)  # touch() leaves the time of an existing file alone on some systems


async def beat(path: Path, alive: Callable[[], bool]) -> None:
    """Touch ``path`` every sweep interval while the worker is alive."""
    while True:
        if alive():
            try:
                _touch(path)
            except OSError as exc:
                logger.warning("heartbeat file %s cannot be written: %s", path, exc)
        await asyncio.sleep(ds_settings.RUN_SWEEP_INTERVAL)

"""Run agent workers: ``manage.py run_agents`` (use with RUNNER = "worker" and Redis)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from durable_sessions.app_settings import ds_settings
from durable_sessions.runtime.health_server import HealthServer, beat
from durable_sessions.runtime.worker import Worker


class Command(BaseCommand):
    help = (
        "Execute agent runs in this process. Start as many as you need: each run is "
        "claimed by exactly one worker, runs are spread over the live workers, and the runs "
        "of a dead worker are continued by another one. SIGTERM drains: no new claims, "
        "DRAIN_GRACE seconds to finish, then the rest is handed back."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--name", help="worker id (default: host:pid:random)")
        parser.add_argument(
            "--health-port",
            type=int,
            help="serve /health/live/, /health/ready/ and /metrics/ on this port (0: any)",
        )
        parser.add_argument(
            "--health-host", default="0.0.0.0", help="address of the health port (0.0.0.0)"
        )
        parser.add_argument(
            "--heartbeat-file", help="touch this file every sweep interval while working"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        asyncio.run(self._main(options))

    async def _main(self, options: dict[str, Any]) -> None:
        worker = Worker(options.get("name"))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        worker.start()
        extras: list[asyncio.Task[None]] = []

        def alive() -> bool:
            return worker.running

        health: HealthServer | None = None
        if options.get("health_port") is not None:
            health = HealthServer(options["health_host"], options["health_port"], alive)
            await health.start()
            self.stdout.write(f"health port {health.port}")
        if options.get("heartbeat_file"):
            path = Path(options["heartbeat_file"])
            extras.append(asyncio.create_task(beat(path, alive)))
        self.stdout.write(
            f"agent worker {worker.id} listening on {ds_settings.RUN_CHANNEL!r} "
            f"(runner mode: {ds_settings.RUNNER})"
        )
        self.stdout.flush()
        await worker.sweep_once()
        await stop.wait()
        self.stdout.write(f"agent worker {worker.id} draining")
        self.stdout.flush()
        await worker.drain()
        for task in extras:
            task.cancel()
        if health is not None:
            await health.stop()

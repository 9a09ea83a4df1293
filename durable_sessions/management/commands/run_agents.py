"""Run agent workers: ``manage.py run_agents`` (use with RUNNER = "worker" and Redis)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.core.management.base import BaseCommand

from durable_sessions.app_settings import ds_settings
from durable_sessions.runtime.worker import Worker


class Command(BaseCommand):
    help = (
        "Execute agent runs in this process. Start as many as you need: each run is "
        "claimed by exactly one worker, and runs of a dead worker are failed and escalated."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--name", help="worker id (default: host:pid:random)")

    def handle(self, *args: Any, **options: Any) -> None:
        asyncio.run(self._main(options.get("name")))

    async def _main(self, name: str | None) -> None:
        worker = Worker(name)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        worker.start()
        self.stdout.write(
            f"agent worker {worker.id} listening on {ds_settings.RUN_CHANNEL!r} "
            f"(runner mode: {ds_settings.RUNNER})"
        )
        self.stdout.flush()
        await worker.sweep_once()
        await stop.wait()
        await worker.stop()

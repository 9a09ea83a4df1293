"""The worker of a process: hears about runs, sweeps for lost ones, reaps dead ones.

A :class:`Worker` (one per process) hears about new runs on ``RUN_CHANNEL``, sweeps for
pending runs whose announcement was lost, and reaps runs whose lease expired (their
process died). Each run executes in a :class:`~durable_sessions.runtime.executor.RunExecutor`.
It runs in ``manage.py run_agents`` processes, or inside the server
(:mod:`durable_sessions.runtime.embedded`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from durable_sessions import service
from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.publish import RUN_MESSAGE_TYPE
from durable_sessions.runtime.executor import RunExecutor
from durable_sessions.service import compaction, runs
from durable_sessions.service.transient import is_transient
from durable_sessions.tasks import background_task

logger = logging.getLogger(__name__)


class Worker:
    """Executes runs in this process: announced, swept up, or left by a dead process."""

    def __init__(self, name: str | None = None) -> None:
        self.id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self._loops: list[asyncio.Task[None]] = []

    def submit(self, run_id: int) -> bool:
        """Start executing ``run_id`` unless it already runs here or the worker is full."""
        if run_id in self.tasks or len(self.tasks) >= ds_settings.MAX_CONCURRENT_RUNS:
            return False
        task = background_task(RunExecutor(self.id, run_id, self.submit).execute())
        self.tasks[run_id] = task
        task.add_done_callback(lambda _t, rid=run_id: self._done(rid, _t))
        return True

    def _done(self, run_id: int, task: asyncio.Task[None]) -> None:
        self.tasks.pop(run_id, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("run %s crashed in its executor", run_id, exc_info=task.exception())

    def start(self) -> None:
        self._loops = [
            background_task(self._listen()),
            background_task(self._sweep()),
            background_task(self._compact()),
        ]

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the worker runs in."""
        return self._loops[0].get_loop() if self._loops else None

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._loops)

    async def stop(self) -> None:
        for task in [*self._loops, *self.tasks.values()]:
            task.cancel()
        for task in [*self._loops, *self.tasks.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _listen(self) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        failing = False
        while True:
            try:
                message = await layer.receive(ds_settings.RUN_CHANNEL)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Once per outage: the sweep still finds pending runs in the database.
                if not failing:
                    logger.warning("run announcements unavailable (%s); sweeping only", exc)
                failing = True
                await asyncio.sleep(1)
                continue
            if failing:
                logger.warning("run announcements available again")
                failing = False
            if message.get("type") == RUN_MESSAGE_TYPE:
                self.submit(int(message["run_id"]))

    async def sweep_once(self) -> None:
        """Pick up pending runs whose announcement was lost; reap runs of dead processes."""
        for run_id in await database_sync_to_async(runs.expired_ids)():
            try:
                await service.acrash_run(run_id)
            except Exception:
                logger.exception("reaping run %s failed", run_id)
        # Approvals past APPROVAL_TIMEOUT are denied; their runs go on (pending again).
        await service.aexpire_approvals()
        room = ds_settings.MAX_CONCURRENT_RUNS - len(self.tasks)
        if room > 0:
            for run_id in await database_sync_to_async(runs.pending_ids)(room):
                self.submit(run_id)

    async def _compact(self) -> None:
        """Fold the deltas of replies that ended ``COMPACT_AFTER`` ago (0: never)."""
        while True:
            # Jitter keeps the processes of a deployment from compacting in lockstep.
            await asyncio.sleep(ds_settings.COMPACT_INTERVAL * random.uniform(0.8, 1.2))
            after = ds_settings.COMPACT_AFTER
            if not after:
                continue
            try:
                await database_sync_to_async(compaction.compact_due)(after_seconds=after)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):  # the next pass tries again
                    logger.warning("compaction: database unavailable (%s)", exc)
                else:
                    logger.exception("compaction failed")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(ds_settings.RUN_SWEEP_INTERVAL)
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):  # the next sweep tries again
                    logger.warning("run sweep: database unavailable (%s)", exc)
                else:
                    logger.exception("run sweep failed")

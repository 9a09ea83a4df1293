"""The worker of a process: hears about runs, sweeps for lost ones, reaps dead ones.

A :class:`Worker` (one per process) hears about new runs on ``RUN_CHANNEL``, sweeps for
pending runs whose announcement was lost, and reaps runs whose lease expired (their
process died: the run is retried by another worker, or fails). It claims only its fair
share of the runs in flight (:mod:`durable_sessions.service.workers`). Stopping, it
drains: it claims nothing more, lets its runs finish within ``DRAIN_GRACE`` and hands the
rest back. Each run executes in a :class:`~durable_sessions.runtime.executor.RunExecutor`.
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
from functools import partial

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from durable_sessions import service
from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.publish import RUN_MESSAGE_TYPE
from durable_sessions.runtime.executor import RunExecutor
from durable_sessions.service import compaction, runs, workers
from durable_sessions.service.transient import is_transient
from durable_sessions.tasks import background_task

logger = logging.getLogger(__name__)


class Worker:
    """Executes runs in this process: announced, swept up, or left by a dead process."""

    def __init__(self, name: str | None = None) -> None:
        self.id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.executors: dict[int, RunExecutor] = {}
        self.draining = False
        self._loops: list[asyncio.Task[None]] = []

    def submit(self, run_id: int, *, fair: bool = True) -> bool:
        """Start executing ``run_id`` unless it already runs here, the worker is full or
        it is stopping; ``fair`` claims it only within this worker's fair share."""
        if (
            self.draining
            or run_id in self.tasks
            or len(self.tasks) >= ds_settings.MAX_CONCURRENT_RUNS
        ):
            return False
        executor = RunExecutor(self.id, run_id, self.submit, fair=fair)
        task = background_task(executor.execute())
        self.tasks[run_id] = task
        self.executors[run_id] = executor
        task.add_done_callback(lambda _t, rid=run_id: self._done(rid, _t))
        return True

    def _done(self, run_id: int, task: asyncio.Task[None]) -> None:
        self.tasks.pop(run_id, None)
        self.executors.pop(run_id, None)
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
        with contextlib.suppress(Exception):
            await database_sync_to_async(workers.gone)(self.id)

    async def drain(self, grace: float | None = None) -> None:
        """Stop for a planned restart: claim nothing more, let the runs in hand finish
        within ``grace`` seconds (``DRAIN_GRACE``), hand the others back to pending for
        another worker to continue (no crash is counted), then stop."""
        grace = ds_settings.DRAIN_GRACE if grace is None else grace
        self.draining = True
        for task in self._loops:
            task.cancel()
        with contextlib.suppress(Exception):
            await database_sync_to_async(workers.seen)(self.id, draining=True)
        if self.tasks:
            logger.info("worker %s draining %d runs (%g s)", self.id, len(self.tasks), grace)
            await asyncio.wait(list(self.tasks.values()), timeout=grace)
        left = list(self.executors.values())
        for executor in left:
            executor.hand_back()
        if self.tasks:
            # The hand-back is one write each; a run stuck beyond it is left to its lease.
            await asyncio.wait(list(self.tasks.values()), timeout=max(ds_settings.LEASE_TIMEOUT, 5))
        if left:
            logger.info("worker %s handed back %d runs", self.id, len(left))
        await self.stop()

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
        if self.draining:
            return
        await database_sync_to_async(workers.seen)(self.id)
        room = min(
            ds_settings.MAX_CONCURRENT_RUNS - len(self.tasks),
            await database_sync_to_async(workers.room)(self.id),
        )
        if room > 0:
            for run_id in await database_sync_to_async(runs.pending_ids)(room):
                self.submit(run_id)
        # A run that no worker took for two sweeps (their shares were full, or a worker
        # counted as live has died) is taken within MAX_CONCURRENT_RUNS alone.
        left = ds_settings.MAX_CONCURRENT_RUNS - len(self.tasks)
        if left > 0:
            waited = 2 * ds_settings.RUN_SWEEP_INTERVAL
            for run_id in await database_sync_to_async(partial(runs.pending_ids, waited=waited))(
                left
            ):
                self.submit(run_id, fair=False)

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
        with contextlib.suppress(Exception):  # counted among the live workers at once
            await database_sync_to_async(workers.seen)(self.id)
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

"""Per-process safety net for missed wake-ups.

Every ``RESYNC_INTERVAL`` seconds one query reads ``last_seq`` of all sessions that
have a connection in this process; a connection that still lacks what was committed at
the previous check re-reads its gap from the database. This covers a wake-up the channel
layer dropped when no later event follows it. Events still on their way (a busy stream
is nearly always a few milliseconds ahead of its sockets) are left to arrive: only what
has been missing for a whole interval is read again. Idle connections cost nothing but
their share of that one query.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from typing import Protocol

from channels.db import database_sync_to_async

from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery import heap
from durable_sessions.delivery.replay import latest_seqs
from durable_sessions.observability import metrics
from durable_sessions.tasks import background_task

logger = logging.getLogger(__name__)


class Follower(Protocol):
    last_sent: int

    async def resync(self, last_seq: int) -> None: ...


class LiveRegistry:
    """The connections of this process, by session, and the task that checks them."""

    def __init__(self) -> None:
        self._by_session: dict[uuid.UUID, set[Follower]] = {}
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        # last_seq of each session at the previous check.
        self._previous: dict[uuid.UUID, int] = {}

    def add(self, session_id: uuid.UUID, follower: Follower) -> None:
        self._by_session.setdefault(session_id, set()).add(follower)
        heap.keeper.opened()
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = background_task(self._run())

    def remove(self, session_id: uuid.UUID, follower: Follower) -> None:
        followers = self._by_session.get(session_id)
        if followers is not None and follower in followers:
            heap.keeper.closed()
            followers.discard(follower)
            if not followers:
                del self._by_session[session_id]

    def __len__(self) -> int:
        return sum(len(f) for f in self._by_session.values())

    async def check_once(self) -> int:
        """Resync every follower that still lacks events committed before the previous
        check; returns how many did."""
        ids = list(self._by_session)
        if not ids:
            self._previous = {}
            return 0
        latest = await database_sync_to_async(latest_seqs)(ids)
        previous, self._previous = self._previous, latest
        behind = [
            (follower, last)
            for session_id, last in latest.items()
            if session_id in previous
            for follower in tuple(self._by_session.get(session_id, ()))
            if follower.last_sent < previous[session_id]
        ]
        metrics.resync_reads(len(behind))
        for follower, last in behind:
            task = background_task(follower.resync(last))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        return len(behind)

    async def _run(self) -> None:
        while self._by_session:
            interval = ds_settings.RESYNC_INTERVAL
            # Jitter keeps many processes from querying in lockstep.
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))
            try:
                await self.check_once()
            except Exception:
                logger.exception("resync check failed")


registry = LiveRegistry()

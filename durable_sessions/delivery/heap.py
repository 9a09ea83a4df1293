"""Keeps settled connections out of Python's full garbage collections.

An idle connection holds about 150 objects that the cyclic collector tracks (Daphne,
Twisted, Channels and this app). At 5,000 connections a full collection walks some
750,000 of them and stops the event loop for half a second or more; every delivery of
that moment waits, which is the long tail of a broadcast. CPython runs one whenever the
long-lived objects have grown by a quarter, and the deliveries themselves (each replaces
a connection's pending receive with a new one) get there within seconds.

So once enough connections have opened, their objects are frozen (``gc.freeze``): they
stay alive and are freed by reference counting as before, but collections skip them and
walk only what came since. What survives a full collection the collector runs on its own
is frozen too (mostly the connections' renewed state), so the next ones stay as short.
What a closed connection leaves in reference cycles (and any cycle that was still in use
when frozen) stays in the frozen set, though; once a quarter of the connections (at least
:data:`MIN_CLOSED`) have closed since, or the last one has, one full collection frees it
(``gc.unfreeze``, ``gc.collect``, ``gc.freeze``), and so does :data:`FULL_SECONDS` after
the first freeze: a pause as long as one without any of this, but only after that much
turnover or time rather than every few seconds.
``GC_FREEZE_CONNECTIONS`` turns it off (e.g. when the host manages freezing itself, as a
pre-forking server that shares pages does); so does a disabled collector.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from durable_sessions.app_settings import ds_settings
from durable_sessions.tasks import background_task

logger = logging.getLogger(__name__)

CHECK_SECONDS = 1.0  # how often the process looks at what opened and closed
FREEZE_AFTER = 100  # connections opened since the last freeze before freezing again
MIN_CLOSED = 500  # connections closed since the last full collection before one
TURNOVER = 0.25  # ... and at least this share of those open
# A full collection at least this long after the first freeze since the last one: what was
# frozen while in use and became garbage later (a request, a reply's cycles) waits no
# longer than that.
FULL_SECONDS = 600.0


class HeapKeeper:
    """Counts this process's connections opening and closing, and freezes or collects."""

    def __init__(
        self,
        *,
        freeze_after: int = FREEZE_AFTER,
        min_closed: int = MIN_CLOSED,
        turnover: float = TURNOVER,
        full_seconds: float = FULL_SECONDS,
    ) -> None:
        self.full_seconds = full_seconds
        self.freeze_after = freeze_after
        self.min_closed = min_closed
        self.turnover = turnover
        self.live = 0
        self.opened_since_freeze = 0
        self.closed_since_full = 0  # of connections open at a freeze since the last full
        self.frozen = False  # whether anything was frozen since the last full collection
        self.frozen_at = 0.0  # time.monotonic() of the first freeze since then
        self.collector_ran = False  # the collector ran a full collection of its own
        self._task: asyncio.Task[None] | None = None

    def opened(self) -> None:
        self.live += 1
        self.opened_since_freeze += 1
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = background_task(self._run())

    def closed(self) -> None:
        self.live = max(0, self.live - 1)
        if self.frozen:  # else the collector frees what it leaves, as usual
            self.closed_since_full += 1

    def settle(self) -> str | None:
        """Freeze or collect if due; returns what it did ("full", "freeze") or None."""
        if not ds_settings.GC_FREEZE_CONNECTIONS or not gc.isenabled():
            return None
        due = max(self.min_closed, self.turnover * self.live)
        stale = time.monotonic() - self.frozen_at >= self.full_seconds
        if self.frozen and (self.closed_since_full >= due or not self.live or stale):
            started = time.perf_counter()
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self.closed_since_full = self.opened_since_freeze = 0
            self.frozen = self.live > 0  # the open connections are frozen again
            self.frozen_at = time.monotonic()
            self.collector_ran = False
            logger.debug(
                "full collection of the frozen connections: %.0f ms",
                1000 * (time.perf_counter() - started),
            )
            return "full"
        if self.collector_ran and self.live >= self.freeze_after:
            # What survived it is the connections' renewed state (each delivery replaces
            # a connection's pending receive, its waiter, their callbacks): freezing it
            # keeps the next full collections as short as this one.
            gc.freeze()
            self._froze()
            return "freeze"
        if self.opened_since_freeze >= self.freeze_after:
            # Collect first so that only live objects are frozen: this walks only what
            # came since the last freeze, a small part of the heap.
            gc.collect()
            gc.freeze()
            self.opened_since_freeze = 0
            self._froze()
            return "freeze"
        return None

    def _froze(self) -> None:
        self.collector_ran = False
        if not self.frozen:
            self.frozen, self.frozen_at = True, time.monotonic()

    def _busy(self) -> bool:
        """Connections are open, or what closed ones left frozen is still to collect."""
        return bool(self.live) or (
            self.frozen and ds_settings.GC_FREEZE_CONNECTIONS and gc.isenabled()
        )

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            self.collector_ran = True

    async def _run(self) -> None:
        if self._observe not in gc.callbacks:  # a task of a loop that closed left it
            gc.callbacks.append(self._observe)
        try:
            while self._busy():
                await asyncio.sleep(CHECK_SECONDS)
                try:
                    self.settle()
                except Exception:
                    logger.exception("garbage-collection upkeep failed")
                    return
        finally:
            if self._observe in gc.callbacks:
                gc.callbacks.remove(self._observe)
        self.opened_since_freeze = 0


keeper = HeapKeeper()

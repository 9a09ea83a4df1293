"""The console's live feed: the queue over a websocket at ``ws/console/``.

Connect: check operator access (close code 4403 otherwise, after the handshake), join
the activity group, then send a snapshot of the queue. Each activity wake-up (a session
created, queued, claimed, written to or closed) is answered with that session's row,
coalesced over ``DEBOUNCE_SECONDS``; a burst of many sessions gets one fresh snapshot
instead. The channel layer may drop wake-ups, so the feed also re-reads the queue every
``REFRESH_SECONDS`` and sends it when it changed: a lost wake-up only delays. A client
that reconnects starts from a fresh snapshot, so it misses nothing and doubles nothing.

Frames to the client (JSON):

- ``{"type": "snapshot", "now", "limits", "sections": {"waiting": [row, ...], ...},
  "operators": [{"id", "name", "availability", "open", "teams"}, ...], "me": {"availability"}}``
- ``{"type": "rows", "now", "rows": [row, ...], "removed": [session id, ...]}``
- ``{"type": "pong"}`` in answer to ``{"type": "ping"}``

The client may also send ``{"type": "refresh"}`` to get a fresh snapshot.

The feed is also the operator's heartbeat (:mod:`handoff_console.availability`): while a
page is connected they are not offline. Each refresh, and each update that shows a session
waiting, runs an assignment pass (:mod:`handoff_console.assignment`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.contrib.auth import get_user_model

from durable_sessions.delivery.groups import activity_group
from durable_sessions.errors import error_payload
from durable_sessions.observability import metrics
from durable_sessions.wire import dumps
from handoff_console import assignment, availability, queue
from handoff_console.app_settings import console_settings
from handoff_console.permissions import is_operator
from handoff_console.presence import add_presence

logger = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403  # the same code the session websocket uses


class ConsoleFeedConsumer(AsyncWebsocketConsumer):
    """One console page's feed of the queue."""

    group: str | None = None

    async def connect(self) -> None:
        await self.accept()
        self.user = self.scope.get("user")
        if not await database_sync_to_async(is_operator)(self.user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self._counted = metrics.connection_opened("console")
        self._send_lock = asyncio.Lock()
        self._pending: set[str] = set()
        self._flush_task: asyncio.Task[None] | None = None
        self._last_snapshot: str | None = None
        # Subscribe first, then read: whatever commits after this point wakes us up,
        # whatever committed before is in the snapshot.
        self.group = activity_group()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await database_sync_to_async(availability.beat)(self.user)
        await self._assign()
        await self._send_snapshot(force=True)
        self._refresh_task = asyncio.create_task(self._refresh_forever())

    async def disconnect(self, code: int) -> None:
        metrics.connection_closed(getattr(self, "_counted", None))
        self._counted = None
        for name in ("_refresh_task", "_flush_task"):
            task = getattr(self, name, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = json.loads(text_data or "")
        except ValueError:
            frame = None
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "ping":
            await self.send(text_data=dumps({"type": "pong"}))
        elif kind == "refresh":
            await self._send_snapshot(force=True)
        else:
            error = error_payload("unknown_type", "send ping or refresh", field="type")
            await self.send(text_data=dumps({"type": "error", **error}))

    # --- wake-ups -------------------------------------------------------------------------

    async def sessions_activity(self, message: dict[str, Any]) -> None:
        """Some session changed: answer with its row, soon, together with any others."""
        self._pending.add(str(message["session_id"]))
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush())

    async def operators_changed(self, message: dict[str, Any]) -> None:
        """An operator chose another availability: send the list again (if it changed)."""
        try:
            await self._send_snapshot(force=False)
        except Exception:
            logger.exception("console feed update failed; the next refresh corrects it")

    async def _flush(self) -> None:
        # Loops until nothing is pending, so an id added while rows were being sent is
        # never left behind.
        while self._pending:
            await asyncio.sleep(console_settings.DEBOUNCE_SECONDS)
            ids, self._pending = self._pending, set()
            try:
                if len(ids) > console_settings.SNAPSHOT_AFTER:
                    await self._send_snapshot(force=True)
                else:
                    rows = await self._send_rows(ids)
                    if any(r["section"] == "waiting" for r in rows):
                        await self._assign()
            except Exception:
                logger.exception("console feed update failed; the next refresh corrects it")

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(console_settings.REFRESH_SECONDS)
            try:
                if not await database_sync_to_async(self._still_operator)():
                    # Access was revoked (or the account deactivated) while connected.
                    await self.close(code=CLOSE_FORBIDDEN)
                    return
                await database_sync_to_async(availability.beat)(self.user)
                await self._assign()
                await self._send_snapshot(force=False)
            except Exception:
                logger.exception("console feed refresh failed; trying again")

    def _still_operator(self) -> bool:
        """Re-read the user (permissions are cached on the object) and ask again."""
        fresh = get_user_model().objects.filter(pk=self.user.pk).first()
        if fresh is None:
            return False
        self.user = fresh
        return is_operator(fresh)

    async def _assign(self) -> None:
        """Run an assignment pass; its take-overs wake every feed up as usual."""
        try:
            await database_sync_to_async(assignment.run_pass)()
        except Exception:
            logger.exception("assignment pass failed; the next refresh tries again")

    # --- sending --------------------------------------------------------------------------

    async def _send_snapshot(self, *, force: bool) -> None:
        """Read the queue and send it (when ``force`` or when it changed)."""
        # One read-and-send at a time, so frames leave in the order they were read.
        async with self._send_lock:
            snap = await database_sync_to_async(self._read_snapshot)()
            await add_presence(row for rows in snap["sections"].values() for row in rows)
            sections = dumps([snap["sections"], snap["operators"], snap["me"]])
            if not force and sections == self._last_snapshot:
                return
            self._last_snapshot = sections
            await self.send(text_data=dumps(snap))

    def _read_snapshot(self) -> dict[str, Any]:
        return availability.with_operators(queue.snapshot(self.user), self.user)

    async def _send_rows(self, ids: set[str]) -> list[dict[str, Any]]:
        async with self._send_lock:
            rows = await database_sync_to_async(queue.rows_for)(ids, self.user)
            await add_presence(rows["rows"])
            # The next periodic refresh compares with a snapshot that rows have changed.
            self._last_snapshot = None
            await self.send(text_data=dumps(rows))
            return rows["rows"]

"""Reads of the agent's status after a log event that may change it, shared by the
connections of a session in this process.

Every connection of a session gets the same wake-up; each read the agent's status from the
database on its own (a few queries on the process's one database thread), so three
devices made three reads and a broadcast to many viewers as many. Here a read is shared
by every connection that asks while it is pending, if it was started for the same or a
later event: it began after that event was received here, hence after it was committed,
so it sees what that connection would have seen with a read of its own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async


class AgentReads:
    """The pending agent-status read of each session (at most one per session)."""

    def __init__(self) -> None:
        # session -> (seq of the event the read was started for, the read)
        self._pending: dict[uuid.UUID, tuple[int, asyncio.Future[dict[str, Any]]]] = {}

    async def state(
        self, session_id: uuid.UUID, seq: int, read: Callable[[uuid.UUID], dict[str, Any]]
    ) -> dict[str, Any]:
        """The agent's state as ``read`` (``service.runs.agent_state``, on the database
        thread) returns it after the event ``seq`` of the session was received."""
        entry = self._pending.get(session_id)
        if (
            entry is None
            or entry[0] < seq
            or entry[1].done()
            or entry[1].get_loop() is not asyncio.get_running_loop()
        ):
            pending = asyncio.ensure_future(database_sync_to_async(read)(session_id))
            entry = (seq, pending)
            self._pending[session_id] = entry
            pending.add_done_callback(lambda _, e=entry: self._forget(session_id, e))
        # A connection that leaves while it waits must not cancel the others' read.
        return await asyncio.shield(entry[1])

    def _forget(self, session_id: uuid.UUID, entry: tuple[int, Any]) -> None:
        if self._pending.get(session_id) is entry:
            del self._pending[session_id]
        read = entry[1]
        if not read.cancelled():
            read.exception()  # retrieved: its waiters may all have left

    def __len__(self) -> int:
        return len(self._pending)


agent_reads = AgentReads()

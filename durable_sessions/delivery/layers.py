"""A one-process channel layer for the embedded default.

Channels' ``InMemoryChannelLayer`` walks every channel and every group membership to
expire old messages on each ``send``-side ``group_send`` and each ``receive``: with a
thousand connected sockets that walk is most of the process's time. This layer expires
at most once a second (messages still expire within ``expiry`` plus a second) and
delivers a group message without a task per member. Everything else, including a copy
of the message per receiver, is Channels' own behaviour.
"""

from __future__ import annotations

import asyncio
import time
from copy import deepcopy
from typing import Any

from channels.layers import InMemoryChannelLayer

# Seconds between two sweeps for expired messages and group memberships.
CLEAN_INTERVAL = 1.0


class LocalChannelLayer(InMemoryChannelLayer):
    """``InMemoryChannelLayer`` with throttled expiry and task-free group sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_clean = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now < self._next_clean:
            return
        self._next_clean = now + CLEAN_INTERVAL
        super()._clean_expired()

    async def flush(self) -> None:
        await super().flush()
        self._next_clean = 0.0

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        expires = time.time() + self.expiry
        for channel in list(self.groups.get(group, ())):
            queue = self.channels.get(channel)
            if queue is None:
                queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
            try:
                queue.put_nowait((expires, deepcopy(message)))
            except asyncio.QueueFull:
                pass  # a full channel misses group messages, as in Channels' layers

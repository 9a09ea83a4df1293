"""Channel layers: a one-process layer for the embedded default, and Redis pub/sub with
batched group sends.

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

try:
    from channels_redis.pubsub import RedisPubSubChannelLayer
except ImportError:  # the "redis" extra is not installed: one process, in-memory layer
    RedisPubSubChannelLayer = None

# The extension name of layers that send many group messages at once.
GROUP_SEND_MANY = "group_send_many"

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

    async def group_send_many(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """Send each ``(group, message)`` in order (the ``group_send_many`` extension)."""
        for group, message in messages:
            await self.group_send(group, message)

    extensions = [*InMemoryChannelLayer.extensions, GROUP_SEND_MANY]


if RedisPubSubChannelLayer is not None:

    class RedisPubSubLayer(RedisPubSubChannelLayer):
        """channels-redis' pub/sub layer with the ``group_send_many`` extension: the group
        messages of one batch go out in one pipelined round trip per Redis host instead of
        one round trip each (a batch of deltas wakes up many sessions at once).

        It relies on the structure of channels-redis 4.x's pub/sub layer (one connection
        object per shard with its own lock); a change there fails the layer's tests.
        """

        extensions = ["groups", "flush", GROUP_SEND_MANY]

        async def group_send_many(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
            loop_layer = self._get_layer()
            shards: dict[Any, list[tuple[str, bytes]]] = {}
            for group, message in messages:
                channel = loop_layer._get_group_channel_name(group)
                shards.setdefault(loop_layer._get_shard(channel), []).append(
                    (channel, self.serialize(message))
                )
            for shard, items in shards.items():
                # The shard's own lock, as its publish() takes: one command stream per host.
                async with shard._lock:
                    shard._ensure_redis()
                    async with shard._redis.pipeline(transaction=False) as pipe:
                        for channel, data in items:
                            pipe.publish(channel, data)
                        await pipe.execute()


def __getattr__(name: str) -> Any:
    # Only reached when channels-redis is missing (the class above was not defined).
    if name == "RedisPubSubLayer":
        raise ImportError(
            "durable_sessions.delivery.layers.RedisPubSubLayer needs channels-redis: "
            'pip install "django-durable-sessions[redis]"'
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

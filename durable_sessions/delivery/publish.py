"""Wake-ups on the channel layer, sent only after the writes they announce are committed.

The layer may drop messages (channels-redis does, silently, past its capacity);
connections detect gaps and re-read the database, and workers sweep for pending runs,
so a lost wake-up only delays.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.groups import activity_group, session_group

logger = logging.getLogger(__name__)

# Group message types, handled by consumers and run watchers.
LIVE_MESSAGE_TYPE = "session.events"
EPHEMERAL_MESSAGE_TYPE = "session.ephemeral"
# Activity-group message type: some session changed (see ACTIVITY_TYPES).
ACTIVITY_MESSAGE_TYPE = "sessions.activity"
# Channel message type that announces a new run to workers.
RUN_MESSAGE_TYPE = "run.pending"

_deferred = threading.local()

P = ParamSpec("P")
R = TypeVar("R")

# A wake-up waiting to be sent: (channel or group name, is_group, message).
Wakeup = tuple[str, bool, dict[str, Any]]


async def asend(wakeup: Wakeup) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    target, is_group, message = wakeup
    if message.get("type") == RUN_MESSAGE_TYPE and threading.current_thread() is (
        threading.main_thread()
    ):
        # A run announced inside the server's own loop (e.g. from an HTTP request): make
        # sure this process's embedded worker is there to hear it.
        from durable_sessions.runtime.worker import ensure_embedded_worker

        ensure_embedded_worker()
    try:
        if is_group:
            await layer.group_send(target, message)
        else:
            await layer.send(target, message)
    except Exception:
        logger.exception("wake-up to %s failed; receivers will catch up", target)


async def asend_all(wakeups: list[Wakeup]) -> None:
    """Send wake-ups in order. On channels-redis' pub/sub layer, group wake-ups go out in
    one pipelined round trip per Redis host instead of one round trip each."""
    if len(wakeups) > 1 and all(is_group for _, is_group, _ in wakeups):
        shards = _pubsub_shards(wakeups)
        if shards is not None:
            await _publish_pipelined(shards)
            return
    for wakeup in wakeups:
        await asend(wakeup)


def _pubsub_shards(wakeups: list[Wakeup]) -> dict[Any, list[tuple[str, bytes]]] | None:
    """Group wake-ups by the Redis host that serves them, or None when the layer is not
    channels-redis' pub/sub layer (or its internals are not the ones known here)."""
    try:
        from channels_redis.pubsub import RedisPubSubChannelLayer
    except ImportError:
        return None
    layer = get_channel_layer()
    if not isinstance(layer, RedisPubSubChannelLayer):
        return None
    try:
        loop_layer = layer._get_layer()
        shards: dict[Any, list[tuple[str, bytes]]] = {}
        for group, _, message in wakeups:
            channel = loop_layer._get_group_channel_name(group)
            shard = loop_layer._get_shard(channel)
            shards.setdefault(shard, []).append((channel, layer.serialize(message)))
    except AttributeError:
        return None
    needed = ("_lock", "_ensure_redis", "_redis")  # what _publish_pipelined uses
    if not all(hasattr(shard, name) for shard in shards for name in needed):
        return None
    return shards


async def _publish_pipelined(shards: dict[Any, list[tuple[str, bytes]]]) -> None:
    for shard, items in shards.items():
        try:
            # The shard's own lock, as its publish() takes: one command stream per host.
            async with shard._lock:
                shard._ensure_redis()
                async with shard._redis.pipeline(transaction=False) as pipe:
                    for channel, data in items:
                        pipe.publish(channel, data)
                    await pipe.execute()
        except Exception:
            logger.exception("%d wake-ups failed; receivers will catch up", len(items))


def _send(wakeup: Wakeup) -> None:
    pending = getattr(_deferred, "pending", None)
    if pending is not None:
        # Inside an async entry point: the event loop sends it, not the database thread.
        pending.append(wakeup)
        return
    if get_channel_layer() is None:
        return
    async_to_sync(asend)(wakeup)


def _on_commit(wakeup: Wakeup) -> None:
    transaction.on_commit(partial(_send, wakeup), robust=True)


def events_wakeup(session_id: uuid.UUID, frames: list[dict[str, Any]]) -> Wakeup:
    return (session_group(session_id), True, {"type": LIVE_MESSAGE_TYPE, "events": frames})


def ephemeral_wakeup(
    session_id: uuid.UUID, frame: dict[str, Any], *, operators_only: bool = False
) -> Wakeup:
    message = {"type": EPHEMERAL_MESSAGE_TYPE, "frame": frame, "operators_only": operators_only}
    return (session_group(session_id), True, message)


# Event types that change what a queue of sessions shows (not the deltas of a stream).
ACTIVITY_TYPES = frozenset(
    {"session.created", "control.changed", "message.created", "session.closed"}
)


def publish_on_commit(session_id: uuid.UUID, frames: list[dict[str, Any]]) -> None:
    """Publish log ``frames`` to the session's group once the transaction commits, and
    tell the activity group when they change what a queue shows."""
    _on_commit(events_wakeup(session_id, frames))
    types = sorted({f["type"] for f in frames} & ACTIVITY_TYPES)
    if types:
        message = {
            "type": ACTIVITY_MESSAGE_TYPE,
            "session_id": str(session_id),
            "types": types,
            "seq": frames[-1]["seq"],
        }
        _on_commit((activity_group(), True, message))


def ephemeral_on_commit(session_id: uuid.UUID, frame: dict[str, Any]) -> None:
    """Publish a state frame that is not part of the log (e.g. the agent's status)."""
    _on_commit(ephemeral_wakeup(session_id, frame))


def announce_run_on_commit(run_id: int) -> None:
    """Tell the workers that a run is waiting, once it is committed."""
    _on_commit((ds_settings.RUN_CHANNEL, False, {"type": RUN_MESSAGE_TYPE, "run_id": run_id}))


async def apublish_ephemeral(
    session_id: uuid.UUID, frame: dict[str, Any], *, operators_only: bool = False
) -> None:
    """Send a state frame now; ``operators_only`` frames never reach the customer."""
    await asend(ephemeral_wakeup(session_id, frame, operators_only=operators_only))


def publish_ephemeral(
    session_id: uuid.UUID, frame: dict[str, Any], *, operators_only: bool = False
) -> None:
    """Sync :func:`apublish_ephemeral`, deferred to after the current transaction."""
    _on_commit(ephemeral_wakeup(session_id, frame, operators_only=operators_only))


def collecting(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> tuple[R, list[Wakeup]]:
    _deferred.pending = []
    try:
        result = fn(*args, **kwargs)
        return result, _deferred.pending
    finally:
        _deferred.pending = None


def make_async(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Async twin of a service function: runs it on the database thread, then wakes up."""

    async def runner(*args: P.args, **kwargs: P.kwargs) -> R:
        result, pending = await database_sync_to_async(collecting)(fn, *args, **kwargs)
        await asend_all(pending)
        return result

    runner.__name__ = f"a{fn.__name__}"
    runner.__qualname__ = runner.__name__
    runner.__doc__ = f"Async version of :func:`{fn.__name__}`."
    return runner

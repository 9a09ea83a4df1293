"""Wake-ups on the channel layer, sent only after the events are committed.

The layer may drop messages (channels-redis does, silently, past its capacity);
connections detect gaps and re-read the database, so a lost wake-up only delays.
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

from durable_sessions.groups import session_group

logger = logging.getLogger(__name__)

LIVE_MESSAGE_TYPE = "session.events"

_deferred = threading.local()

P = ParamSpec("P")
R = TypeVar("R")


def _message(frames: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": LIVE_MESSAGE_TYPE, "events": frames}


def publish_on_commit(session_id: uuid.UUID, frames: list[dict[str, Any]]) -> None:
    """Publish ``frames`` to the session's group once the current transaction commits."""
    transaction.on_commit(partial(_publish, session_id, frames), robust=True)


def _publish(session_id: uuid.UUID, frames: list[dict[str, Any]]) -> None:
    pending = getattr(_deferred, "pending", None)
    if pending is not None:
        # Inside an async entry point: the event loop sends it, not the database thread.
        pending.append((session_id, frames))
        return
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(session_group(session_id), _message(frames))
    except Exception:
        logger.exception("publish to session %s failed; clients will resync", session_id)


async def apublish(session_id: uuid.UUID, frames: list[dict[str, Any]]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(session_group(session_id), _message(frames))
    except Exception:
        logger.exception("publish to session %s failed; clients will resync", session_id)


def _collecting(
    fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs
) -> tuple[R, list[tuple[uuid.UUID, list[dict[str, Any]]]]]:
    _deferred.pending = []
    try:
        result = fn(*args, **kwargs)
        return result, _deferred.pending
    finally:
        _deferred.pending = None


def make_async(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Async twin of a service function: runs it on the database thread, then publishes."""

    async def runner(*args: P.args, **kwargs: P.kwargs) -> R:
        result, pending = await database_sync_to_async(_collecting)(fn, *args, **kwargs)
        for session_id, frames in pending:
            await apublish(session_id, frames)
        return result

    runner.__name__ = f"a{fn.__name__}"
    runner.__qualname__ = runner.__name__
    runner.__doc__ = f"Async version of :func:`{fn.__name__}`."
    return runner

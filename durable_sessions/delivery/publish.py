"""Wake-ups on the channel layer: sent after the writes they announce are committed.

The layer may drop messages (channels-redis does, silently, past its capacity);
connections detect gaps and re-read the database, and workers sweep for pending runs,
so a lost wake-up only delays. Two ways to send, one name each:
:func:`publish_on_commit` (from a transaction: sent once it commits) and
:func:`publish_now` (from the event loop, now).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.groups import activity_group, session_group
from durable_sessions.delivery.layers import GROUP_SEND_MANY
from durable_sessions.observability import metrics

logger = logging.getLogger(__name__)

# Group message types, handled by consumers and run watchers.
LIVE_MESSAGE_TYPE = "session.events"
EPHEMERAL_MESSAGE_TYPE = "session.ephemeral"
# Activity-group message type: some session changed (see ACTIVITY_TYPES).
ACTIVITY_MESSAGE_TYPE = "sessions.activity"
# Channel message type that announces a new run to workers.
RUN_MESSAGE_TYPE = "run.pending"
# Group message type: the session was deleted (erased, or past retention).
REMOVED_MESSAGE_TYPE = "session.removed"

# Event types that change what a queue of sessions shows (not the deltas of a stream).
ACTIVITY_TYPES = frozenset(
    {"session.created", "control.changed", "message.created", "session.closed", "tool.updated"}
)

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Wakeup:
    """One channel-layer message: to a group (every connection of a session) or to one
    channel (the workers' run channel)."""

    target: str
    message: dict[str, Any]
    is_group: bool = True


def session_wakeup(
    session_id: uuid.UUID,
    frames: list[dict[str, Any]],
    ephemeral: list[tuple[dict[str, Any], bool]] | None = None,
) -> Wakeup:
    """The one message that tells a session's connections about committed log ``frames``
    and state frames that are not in the log (``(frame, operators_only)`` pairs)."""
    message: dict[str, Any] = {"type": LIVE_MESSAGE_TYPE, "events": frames}
    if ephemeral:
        message["ephemeral"] = [
            {"frame": frame, "operators_only": operators_only}
            for frame, operators_only in ephemeral
        ]
    return Wakeup(session_group(session_id), message)


def ephemeral_wakeup(
    session_id: uuid.UUID, frame: dict[str, Any], *, operators_only: bool = False
) -> Wakeup:
    """A state frame on its own (typing, a private note, the agent's status)."""
    message = {"type": EPHEMERAL_MESSAGE_TYPE, "frame": frame, "operators_only": operators_only}
    return Wakeup(session_group(session_id), message)


def activity_wakeup(session_id: uuid.UUID, frames: list[dict[str, Any]]) -> Wakeup | None:
    """What queue views hear when ``frames`` change what a queue shows; None otherwise."""
    types = sorted({f["type"] for f in frames} & ACTIVITY_TYPES)
    if not types:
        return None
    message = {
        "type": ACTIVITY_MESSAGE_TYPE,
        "session_id": str(session_id),
        "types": types,
        "seq": frames[-1]["seq"],
    }
    return Wakeup(activity_group(), message)


def removed_wakeups(session_id: uuid.UUID) -> list[Wakeup]:
    """Tell a deleted session's connections to close, and queue views to drop its row."""
    activity = {
        "type": ACTIVITY_MESSAGE_TYPE,
        "session_id": str(session_id),
        "types": [REMOVED_MESSAGE_TYPE],
        "seq": 0,
    }
    return [
        Wakeup(session_group(session_id), {"type": REMOVED_MESSAGE_TYPE}),
        Wakeup(activity_group(), activity),
    ]


def run_wakeup(run_id: int) -> Wakeup:
    """Tells the workers that a run is waiting."""
    return Wakeup(ds_settings.RUN_CHANNEL, {"type": RUN_MESSAGE_TYPE, "run_id": run_id}, False)


class LayerHealth:
    """Reports a failing channel layer once per outage, not once per wake-up: during a
    Redis outage every write of every process fails to wake its receivers (who catch up
    from the database), and a traceback each would flood the log."""

    def __init__(self) -> None:
        self.failing = False
        self.lost = 0

    def failed(self, exc: Exception, count: int) -> None:
        metrics.wakeups_lost(count)
        self.lost += count
        if not self.failing:
            self.failing = True
            logger.warning(
                "channel layer unavailable (%s: %s): wake-ups are not sent until it returns; "
                "receivers catch up from the database",
                type(exc).__name__,
                exc,
            )

    def succeeded(self) -> None:
        if self.failing:
            logger.warning("channel layer available again (%d wake-ups were lost)", self.lost)
            self.failing, self.lost = False, 0


health = LayerHealth()


async def publish_now(wakeups: list[Wakeup]) -> None:
    """Send ``wakeups`` in order. A layer with the ``group_send_many`` extension gets the
    group messages of the batch in one call (one Redis round trip per host)."""
    layer = get_channel_layer()
    if layer is None or not wakeups:
        return
    if len(wakeups) > 1 and GROUP_SEND_MANY in getattr(layer, "extensions", ()):
        if all(w.is_group for w in wakeups):
            try:
                await layer.group_send_many([(w.target, w.message) for w in wakeups])
            except Exception as exc:
                health.failed(exc, len(wakeups))
            else:
                health.succeeded()
            return
    for index, wakeup in enumerate(wakeups):
        try:
            if wakeup.is_group:
                await layer.group_send(wakeup.target, wakeup.message)
            else:
                await layer.send(wakeup.target, wakeup.message)
        except Exception as exc:
            # The rest would fail the same way (and each wait for a timeout).
            health.failed(exc, len(wakeups) - index)
            return
    health.succeeded()


# Wake-ups of a service call made from the event loop (see :func:`make_async`): the loop
# sends them once the call returns, instead of the database thread.
_collected = threading.local()


def publish_on_commit(wakeups: list[Wakeup]) -> None:
    """Send ``wakeups`` once the current transaction commits (at once outside one)."""
    if wakeups:
        transaction.on_commit(partial(_send_committed, wakeups), robust=True)


def _send_committed(wakeups: list[Wakeup]) -> None:
    pending = getattr(_collected, "pending", None)
    if pending is not None:
        pending.extend(wakeups)
        return
    if get_channel_layer() is not None:
        async_to_sync(publish_now)(wakeups)


def collecting(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> tuple[R, list[Wakeup]]:
    """Call ``fn`` and return what it published on commit instead of sending it."""
    _collected.pending = []
    try:
        result = fn(*args, **kwargs)
        return result, _collected.pending
    finally:
        _collected.pending = None


def make_async(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Async twin of a service function: runs it on the database thread, then the event
    loop sends its wake-ups."""

    async def runner(*args: P.args, **kwargs: P.kwargs) -> R:
        result, pending = await database_sync_to_async(collecting)(fn, *args, **kwargs)
        await publish_now(pending)
        return result

    runner.__name__ = f"a{fn.__name__}"
    runner.__qualname__ = runner.__name__
    runner.__doc__ = f"Async version of :func:`{fn.__name__}`."
    return runner

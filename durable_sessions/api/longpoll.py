"""Long polling for the HTTP catch-up, without holding a thread while waiting.

Subscribe, then read, then wait: the request joins the session's channel-layer group
before its first database read, so an event committed after that read wakes it up. The
wake-up only says "read again": the answer always comes from the database, and when a
wake-up is lost (the layer may drop messages) the read at the end of the wait still finds
the event. Database work runs in short calls on the thread Django gives sync code (like
``database_sync_to_async``, which all run on one thread per process); the waiting is an
``await`` on the event loop, never a sleep on that thread, and no database connection is
held in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from django.db import connections
from django.http import HttpRequest, HttpResponse

from durable_sessions.api.errors import rate_limited_response
from durable_sessions.api.permissions import parse_session_id
from durable_sessions.api.serializers import MAX_WAIT_SECONDS
from durable_sessions.delivery import limits
from durable_sessions.delivery.groups import session_group
from durable_sessions.delivery.publish import LIVE_MESSAGE_TYPE, REMOVED_MESSAGE_TYPE

logger = logging.getLogger(__name__)

SyncView = Callable[..., HttpResponse]
AsyncView = Callable[..., Awaitable[HttpResponse]]


# While the channel layer is unreachable, a long poll reads the database this often.
POLL_SECONDS = 1.0


class Wakeups:
    """A private channel in one session's group, for the length of one request.

    One ``receive`` stays pending from start to end, so that leaving cancels it: that is
    when channels-redis' pub/sub layer unsubscribes the channel.
    """

    def __init__(self, session_id: uuid.UUID) -> None:
        self.group = session_group(session_id)
        self.layer: BaseChannelLayer | None = None
        self.channel = ""
        self._pending: asyncio.Future[dict[str, Any]] | None = None
        # The layer failed (Redis away): read the database every POLL_SECONDS instead.
        self.degraded = False

    async def __aenter__(self) -> Wakeups:
        layer = get_channel_layer()
        if layer is None:
            return self  # no layer (see check E003): wait out the time, then read again
        try:
            self.channel = await layer.new_channel()
            await layer.group_add(self.group, self.channel)
        except Exception as exc:
            self._degrade(exc)
            return self
        self.layer = layer
        self._receive()
        return self

    def _degrade(self, exc: Exception) -> None:
        logger.warning(
            "long poll without wake-ups (%s: %s); reading every %g s",
            type(exc).__name__,
            exc,
            POLL_SECONDS,
        )
        self.degraded = True

    def _receive(self) -> None:
        assert self.layer is not None
        self._pending = asyncio.ensure_future(self.layer.receive(self.channel))

    async def wait(self, after: int, seconds: float) -> bool:
        """Wait up to ``seconds`` for a wake-up announcing an event after ``after``.

        True when one came; False when the time ran out (or there is no layer to listen to).
        Other group messages (agent status, presence) are skipped.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (remaining := deadline - loop.time()) > 0:
            if self.degraded:
                await asyncio.sleep(min(remaining, POLL_SECONDS))
                return True  # "read again": nothing tells us, so look
            if self._pending is None:
                await asyncio.sleep(remaining)
                return False
            done, _ = await asyncio.wait({self._pending}, timeout=remaining)
            if not done:
                return False
            finished, self._pending = self._pending, None
            try:
                message = finished.result()
            except Exception as exc:
                self._degrade(exc)
                continue
            self._receive()
            if message.get("type") == REMOVED_MESSAGE_TYPE:
                return True  # deleted: the next read answers 404 at once
            if message.get("type") == LIVE_MESSAGE_TYPE and any(
                frame.get("seq", 0) > after for frame in message.get("events", ())
            ):
                return True
        return False

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.layer is None:
            return
        if self._pending is not None:
            self._pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pending
        try:
            await self.layer.group_discard(self.group, self.channel)
        except Exception as exc:
            logger.warning("could not leave %s (%s); the layer expires it", self.group, exc)


def release_connections() -> None:
    """Close obsolete database connections, as ``database_sync_to_async`` does.

    Between its reads a long poll waits for up to 30 s; with ``CONN_MAX_AGE = 0`` this
    gives the connection back meanwhile. A connection inside a transaction the caller
    holds (a test case wraps each test in one) is left alone.
    """
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def in_short_sync_call(sync_view: SyncView) -> AsyncView:
    """``sync_view`` run on the thread Django runs sync code on, releasing connections."""

    def call(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        release_connections()
        try:
            return sync_view(request, *args, **kwargs)
        finally:
            release_connections()

    return sync_to_async(call, thread_sensitive=True)


def requested_wait(request: HttpRequest) -> float:
    """The ``wait`` of the query if valid, else 0: the view itself reports a bad value."""
    try:
        wait = float(request.GET.get("wait", "0"))
    except ValueError:
        return 0.0
    return wait if 0 < wait <= MAX_WAIT_SECONDS else 0.0


def long_poll(sync_view: SyncView) -> AsyncView:
    """Turn a DRF view into an async view that long-polls.

    The DRF view authenticates, authorizes and reads as usual (so access is re-checked on
    every read). When it found nothing to return it sets ``poll_after`` on its response;
    this view then waits for a wake-up and runs it again.
    """
    run = in_short_sync_call(sync_view)

    async def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = requested_wait(request)
        session_id = parse_session_id(kwargs.get("session_id"))
        if wait <= 0 or session_id is None:
            return await run(request, *args, **kwargs)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        async with Wakeups(session_id) as wakeups, limits.Held("long_poll") as slot:
            response = await run(request, *args, **kwargs)
            after = getattr(response, "poll_after", None)
            if after is not None and (refused := await slot.take(request)):
                return rate_limited_response(refused)  # it would wait: one of a few per visitor
            while after is not None and (remaining := deadline - loop.time()) > 0:
                woken = await wakeups.wait(after, remaining)
                # Read again either way: at the end of the wait this catches an event
                # whose wake-up the layer dropped.
                response = await run(request, *args, **kwargs)
                after = getattr(response, "poll_after", None) if woken else None
        return response

    # What Django and DRF know the view by: its class (for the schema generator and URL
    # introspection), CSRF exemption (DRF checks CSRF itself) and login exemption.
    view.__dict__.update(
        (name, value) for name, value in sync_view.__dict__.items() if name != "__wrapped__"
    )
    # A read-only view; Django refuses ATOMIC_REQUESTS around an async view.
    view._non_atomic_requests = set(connections.settings)  # type: ignore[attr-defined]
    view.__name__ = getattr(sync_view, "__name__", "view")
    view.__doc__ = sync_view.__doc__
    return view

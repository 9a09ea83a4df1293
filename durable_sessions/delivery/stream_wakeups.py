"""Wake-ups of stream readers: a long poll or SSE response waits on a channel-layer group
instead of holding a thread or a database connection.

Subscribe, then read, then wait: a reader joins the group before its first read, so an
append committed after that read wakes it. A wake-up says "read again"; a reader that
knows the committed frames a session's wake-up carries may use those that continue exactly
what it has read (as a websocket does), and reads anything else from the database. The
layer may drop messages, so a waiter also reads again every ``RESYNC_INTERVAL`` on its
own: a lost wake-up costs latency, never data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

from channels.layers import BaseChannelLayer, get_channel_layer

from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.publish import Wakeup

logger = logging.getLogger(__name__)

STREAM_MESSAGE_TYPE = "stream.appended"


def stream_group(stream_id: int) -> str:
    """The group every reader of one generic stream waits on."""
    return f"{ds_settings.GROUP_PREFIX}.st.{stream_id}"


def stream_wakeup(stream_id: int, tail_seq: int, closed: bool) -> Wakeup:
    """Tells a stream's readers that it grew (or closed)."""
    message = {"type": STREAM_MESSAGE_TYPE, "seq": tail_seq, "closed": closed}
    return Wakeup(stream_group(stream_id), message)


class GroupWaiter:
    """A private channel in one group for the length of one request.

    ``relevant`` picks the group messages worth reading again for (a session's group also
    carries presence and typing). One ``receive`` stays pending from start to end, so that
    leaving cancels it: that is when channels-redis' pub/sub layer unsubscribes.
    """

    def __init__(self, group: str, relevant: Callable[[dict[str, Any]], bool]) -> None:
        self.group = group
        self.relevant = relevant
        self.layer: BaseChannelLayer | None = None
        self.channel = ""
        self._pending: asyncio.Future[dict[str, Any]] | None = None
        self._poke: asyncio.Future[None] | None = None

    def poke(self) -> None:
        """End the current (or the next) ``wait(resync=False)`` at once: read again."""
        if self._poke is None:
            self._poke = asyncio.get_running_loop().create_future()
        if not self._poke.done():
            self._poke.set_result(None)

    async def __aenter__(self) -> GroupWaiter:
        layer = get_channel_layer()
        if layer is None:
            return self
        try:
            self.channel = await layer.new_channel()
            await layer.group_add(self.group, self.channel)
        except Exception as exc:
            logger.warning("stream reader without wake-ups (%s: %s)", type(exc).__name__, exc)
            return self
        self.layer = layer
        self._pending = asyncio.ensure_future(layer.receive(self.channel))
        return self

    async def wait(self, seconds: float, *, resync: bool = True) -> dict[str, Any] | None:
        """Return when a relevant wake-up came (that message), or after ``seconds``, or
        after the resync interval (None; whichever is first): then the caller reads again.

        ``resync=False``: no read every interval of its own; the caller is in the
        per-process check (:mod:`durable_sessions.delivery.resync`), which pokes it."""
        loop = asyncio.get_running_loop()
        interval = ds_settings.RESYNC_INTERVAL if resync or self._pending is None else seconds
        deadline = loop.time() + min(seconds, interval)
        poke: set[asyncio.Future[Any]] = set()
        if not resync:
            if self._poke is None:
                self._poke = loop.create_future()
            poke = {self._poke}
        while (remaining := deadline - loop.time()) > 0:
            if self._poke is not None and self._poke.done():
                self._poke = None
                return None
            if self._pending is None:
                await asyncio.sleep(min(remaining, ds_settings.RESYNC_INTERVAL))
                return None
            done, _ = await asyncio.wait(
                {self._pending, *poke}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                return None
            if self._pending not in done:
                continue  # poked
            finished, self._pending = self._pending, None
            try:
                message = finished.result()
            except Exception as exc:
                logger.warning("stream wake-ups lost (%s: %s)", type(exc).__name__, exc)
                continue  # no more receives: the resync interval paces the reads
            assert self.layer is not None
            self._pending = asyncio.ensure_future(self.layer.receive(self.channel))
            if self.relevant(message):
                return message
        return None

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

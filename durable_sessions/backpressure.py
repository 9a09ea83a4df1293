"""Back-pressure for websocket sends: never queue more for a client than it reads.

ASGI's ``send`` returns as soon as the server has taken a message, whether or not the
client reads it: a client that stops reading would make the server buffer a whole replay.
Before each frame the consumer asks its :class:`Flow` to wait until the bytes still
queued for the client are at most ``MAX_SEND_BUFFER_BYTES``; a client that stays above
that for ``SLOW_CLIENT_TIMEOUT`` seconds is closed (4408) and resumes with ``after_seq``.

ASGI gives an application no view of the server's send buffer, so :func:`flow_for`
recognises Daphne's ``send`` callable (``functools.partial(Server.handle_reply,
protocol)``, possibly behind Channels' session wrapper) and reads the unsent bytes of the
autobahn protocol's Twisted transport (:class:`DaphneFlow`). The check polls, and only
while a connection is over its limit; it registers no producer with the transport, since
a streaming producer changes when Twisted finishes closing a connection.

Under another server (Uvicorn, Hypercorn, a test communicator) the buffer is invisible:
:class:`PacedFlow` then bounds the rate instead, ``MAX_SEND_BUFFER_BYTES`` per
``PACE_SECONDS``, so a client that never reads costs memory at a bounded rate and not a
whole replay at once. (Uvicorn's websockets implementation also waits for its transport
to drain on each send.)
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Protocol

# A paced connection may send its limit once per this many seconds.
PACE_SECONDS = 0.05
# Polling of a full buffer: starts fast, backs off to this.
MAX_POLL_SECONDS = 0.25


class Flow(Protocol):
    """What the consumer asks before it sends a frame."""

    async def wait_writable(self, limit: int, patience: float) -> bool:
        """Wait until at most ``limit`` bytes are queued; False after ``patience`` seconds."""
        ...

    def sent(self, size: int) -> None:
        """Account ``size`` bytes just handed to the server."""
        ...

    def closed(self) -> bool:
        """Whether the connection is known to be gone (sends would be dropped)."""
        ...


class DaphneFlow:
    """Reads the unsent bytes of one Daphne (autobahn on Twisted) websocket connection."""

    __slots__ = ("protocol",)  # one per open connection: no instance dict

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol

    def pending(self) -> int:
        """Bytes taken by the server and not yet written to the socket."""
        protocol = self.protocol
        size = sum(len(data) for data, _ in getattr(protocol, "send_queue", ()))
        transport = protocol.transport
        # A TLS transport wraps the TCP one; its encrypted bytes wait in the inner buffer.
        for candidate in (transport, getattr(transport, "transport", None)):
            if candidate is not None and hasattr(candidate, "dataBuffer"):
                size += len(candidate.dataBuffer) - candidate.offset + candidate._tempDataLen
                break
        return size

    def closed(self) -> bool:
        protocol = self.protocol
        transport = protocol.transport
        return (
            transport is None
            or getattr(transport, "disconnected", False)
            or protocol.state != protocol.STATE_OPEN
        )

    def sent(self, size: int) -> None:
        pass  # the transport keeps the count

    async def wait_writable(self, limit: int, patience: float) -> bool:
        if self.closed() or self.pending() <= limit:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        delay = 0.01
        while not self.closed() and self.pending() > limit:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_POLL_SECONDS)
        return True


class PacedFlow:
    """Bounds the rate of sends where the server's buffer cannot be seen."""

    __slots__ = ("_at", "_budget", "_limit")

    def __init__(self) -> None:
        self._budget = 0.0
        self._at: float | None = None
        self._limit = 0

    def closed(self) -> bool:
        return False

    def sent(self, size: int) -> None:
        self._budget -= size

    async def wait_writable(self, limit: int, patience: float) -> bool:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._at is None or limit != self._limit:
            self._at, self._budget, self._limit = now, float(limit), limit
        # Refill: ``limit`` bytes per PACE_SECONDS, never more than ``limit`` banked.
        self._budget = min(float(limit), self._budget + (now - self._at) * limit / PACE_SECONDS)
        self._at = now
        if self._budget <= 0:
            await asyncio.sleep(-self._budget * PACE_SECONDS / limit)
        return True


def _daphne_protocol(send: Any) -> Any | None:
    """The autobahn protocol behind Daphne's ``send``, through known wrappers."""
    try:
        from autobahn.websocket.protocol import WebSocketProtocol
    except ImportError:
        return None
    for _ in range(8):
        if isinstance(send, functools.partial):
            for arg in send.args:
                if isinstance(arg, WebSocketProtocol):
                    return arg
            send = send.func
        elif hasattr(getattr(send, "__self__", None), "real_send"):
            send = send.__self__.real_send  # channels.sessions.InstanceSessionWrapper
        else:
            return None
    return None


def flow_for(send: Any) -> Flow:
    """The flow control for a connection, from the ``send`` callable its server gave."""
    protocol = _daphne_protocol(send)
    if protocol is not None and getattr(protocol, "transport", None) is not None:
        return DaphneFlow(protocol)
    return PacedFlow()

"""Websocket routes; a host project adds these to its ASGI router.

:func:`websocket_router` is Channels' ``URLRouter`` with one more route, last: any path
no route matched is accepted and closed with 4404. A plain ``URLRouter`` raises for it,
which Daphne logs as a traceback and answers with HTTP 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from channels.routing import URLRouter
from django.urls import URLPattern, re_path

from durable_sessions.consumers import SessionConsumer

CLOSE_NOT_FOUND = 4404

websocket_urlpatterns = [
    # Any id reaches the consumer, which closes a malformed one with 4400.
    re_path(r"^ws/sessions/(?P<session_id>[^/]+)/$", SessionConsumer.as_asgi()),
]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def refuse_unknown_path(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """An ASGI app that closes the websocket with 4404 once its handshake arrives."""
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            # A close code reaches the client only after the handshake completes.
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": CLOSE_NOT_FOUND})
            return
        if message["type"] == "websocket.disconnect":
            return


def websocket_router(routes: Sequence[URLPattern]) -> URLRouter:
    """``URLRouter(routes)`` that closes an unknown path with 4404 instead of raising."""
    return URLRouter([*routes, re_path(r"", refuse_unknown_path)])

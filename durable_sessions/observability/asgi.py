"""A span per HTTP request and per websocket connection (OpenTelemetry, ``TRACING``).

Wrap the ASGI application (outermost, so that the span covers everything)::

    application = TracingMiddleware(ProtocolTypeRouter({...}))

Span names are low-cardinality (``HTTP GET /ds/sessions/{session_id}/events/``); the
session id, when the path holds one, is the ``ds.session_id`` attribute. With tracing
off the wrapper passes the call straight on.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Any

from durable_sessions.observability import tracing

_UUID = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)


def _route(path: str) -> tuple[str, str | None]:
    found = _UUID.search(path)
    if found is None:
        return path, None
    return _UUID.sub("{session_id}", path), found.group(0)


class TracingMiddleware:
    """Opens a span around each ``http`` and ``websocket`` call of the wrapped app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    # A plain function: with tracing off (or for other scopes) it hands back the wrapped
    # app's coroutine, so an open connection keeps no coroutine frame of this wrapper (the
    # attribute tells ASGI servers it is ASGI 3).
    _asgi_single_callable = True

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[Any]:
        if scope.get("type") not in ("http", "websocket") or not tracing.enabled():
            return self.app(scope, receive, send)
        return self._traced(scope, receive, send)

    async def _traced(self, scope: Any, receive: Any, send: Any) -> Any:
        kind = scope.get("type")
        route, session_id = _route(scope.get("path", ""))
        method = scope.get("method", "GET") if kind == "http" else "WS"
        name = f"HTTP {method} {route}" if kind == "http" else f"WS {route}"
        with tracing.span(
            name, session_id=session_id, **{"url.path": route, "ds.transport": kind}
        ) as span:

            async def traced_send(message: dict[str, Any]) -> None:
                if message.get("type") == "http.response.start":
                    span.set_attribute("http.response.status_code", message.get("status", 0))
                elif message.get("type") == "websocket.close":
                    span.set_attribute("ds.close_code", message.get("code", 1000))
                await send(message)

            return await self.app(scope, receive, traced_send)

"""Websocket routes; a host project adds these to its ASGI router.

:func:`websocket_router` is Channels' ``URLRouter`` with one more route, last: any path
no route matched is accepted and closed with 4404. A plain ``URLRouter`` raises for it,
which Daphne logs as a traceback and answers with HTTP 500. It also hands back the
matched app's coroutine rather than awaiting it in a coroutine of its own, which every
open connection would keep (with the scope it was given) for as long as it stays open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from channels.routing import URLRouter
from django.urls import URLPattern, re_path
from django.urls.exceptions import Resolver404

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


class _Router(URLRouter):
    """Channels' ``URLRouter`` that hands back the matched app's coroutine instead of
    awaiting it in one of its own: an open connection keeps no coroutine frame of the
    router, nor the scope it was given (the app gets its own copy, as from ``URLRouter``).

    A router with nested routers routes as ``URLRouter`` does: those say "no match" by
    raising ``Resolver404`` once awaited, which only a coroutine can catch."""

    _asgi_single_callable = True  # a plain function, but ASGI 3: tells ASGI servers so

    def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> Awaitable[Any]:
        if any(getattr(route.callback, "_path_routing", False) for route in self.routes):
            return super().__call__(scope, receive, send)
        path = scope.get("path_remaining", scope.get("path"))
        if path is None:
            raise ValueError("No 'path' key in connection scope, cannot route URLs")
        if "path_remaining" not in scope:  # the outermost router: strip root_path
            root_path = scope.get("root_path", "")
            if root_path and not path.startswith(root_path):
                raise ValueError(f"No route found for path {path!r}.")
            path = path[len(root_path) :]
        path = path.lstrip("/")  # as Django matches
        for route in self.routes:
            try:
                match = route.pattern.match(path)
            except Resolver404:
                continue
            if match:
                new_path, args, kwargs = match
                kwargs.update(route.default_args)
                outer = scope.get("url_route", {})
                return route.callback(
                    dict(
                        scope,
                        path_remaining=new_path,
                        url_route={
                            "args": outer.get("args", ()) + args,
                            "kwargs": {**outer.get("kwargs", {}), **kwargs},
                        },
                    ),
                    receive,
                    send,
                )
        if "path_remaining" in scope:
            raise Resolver404(f"No route found for path {path!r}.")
        raise ValueError(f"No route found for path {path!r}.")


def websocket_router(routes: Sequence[URLPattern]) -> URLRouter:
    """``URLRouter(routes)`` that closes an unknown path with 4404 instead of raising."""
    return _Router([*routes, re_path(r"", refuse_unknown_path)])
